"""What a live target costs next to a SQLite file: opening (catalog and samples), the value index,
and executing a round of candidates, on the same generated data in SQLite, DuckDB and PostgreSQL.

The data is a shop (customers, products, orders; --orders rows) written by the same portable DDL
into each engine. PostgreSQL is the server at --pg-url (or $SLMSQL_PG_URL; the password from
PGPASSWORD/.pgpass, the user must be able to create a scratch database, dropped afterwards), else a
throwaway server started like the tests do (tests/pg_server.py), else it is left out.

  python benchmarks/targets_overhead.py --orders 200000

Prints a markdown table (milliseconds; candidates: median of --repeats rounds of 8 distinct SQL).
"""

from __future__ import annotations

import argparse
import os
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

DDL = [
    "CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT NOT NULL, city TEXT, country TEXT)",
    "CREATE TABLE products (id INTEGER PRIMARY KEY, title TEXT, category TEXT, price REAL)",
    "CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id INTEGER REFERENCES customers (id), "
    "product_id INTEGER REFERENCES products (id), quantity INTEGER, placed TEXT)",
]
CANDIDATES = [
    "SELECT count(*) FROM orders",
    "SELECT c.city, count(*) FROM orders AS o JOIN customers AS c ON o.customer_id = c.id GROUP BY c.city",
    "SELECT p.category, sum(o.quantity * p.price) FROM orders AS o JOIN products AS p ON o.product_id = p.id "
    "GROUP BY p.category ORDER BY 2 DESC",
    "SELECT name FROM customers WHERE city = 'Lisbon' ORDER BY name LIMIT 10",
    "SELECT substr(placed, 1, 7) AS month, count(*) FROM orders GROUP BY month ORDER BY month",
    "SELECT title FROM products WHERE price > (SELECT avg(price) FROM products)",
    "SELECT c.name, count(*) AS n FROM customers AS c JOIN orders AS o ON o.customer_id = c.id "
    "GROUP BY c.id, c.name ORDER BY n DESC LIMIT 5",
    "SELECT count(DISTINCT customer_id) FROM orders WHERE placed LIKE '2024-03%'",
]
CITIES = ["Lisbon", "London", "New York", "Rotterdam", "Kyoto", "Lagos", "Lima", "Oslo"]


def rows(n_orders: int) -> dict[str, list[tuple]]:
    rng = random.Random(7)
    n_customers, n_products = max(10, n_orders // 20), 500
    customers = [(i, f"Customer {i}", rng.choice(CITIES), "somewhere") for i in range(1, n_customers + 1)]
    products = [
        (i, f"Product {i}", f"category {i % 17}", round(rng.uniform(1, 200), 2))
        for i in range(1, n_products + 1)
    ]
    orders = [
        (i, rng.randint(1, n_customers), rng.randint(1, n_products), rng.randint(1, 9),
         f"2024-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}")
        for i in range(1, n_orders + 1)
    ]  # fmt: skip
    return {"customers": customers, "products": products, "orders": orders}


def fill(
    execute: Callable[[str], Any], insert: Callable[[str, list[tuple]], Any], data: dict[str, list[tuple]]
) -> None:
    for statement in DDL:
        execute(statement)
    for table, table_rows in data.items():
        marks = ", ".join(["?"] * len(table_rows[0]))
        insert(f"INSERT INTO {table} VALUES ({marks})", table_rows)


@contextmanager
def postgres(url: str | None, data: dict[str, list[tuple]]) -> Iterator[str | None]:
    """A scratch database holding the data on the server at `url` (or a throwaway server); its URL."""
    import psycopg

    stack = ExitStack()
    if url is None:
        import pg_server

        server = pg_server.start()
        if isinstance(server, str):
            print(f"PostgreSQL left out: {server}", file=sys.stderr)
            yield None
            return
        stack.callback(server.stop)
        os.environ.setdefault("PGPASSWORD", pg_server.PASSWORD)
        url = server.url()
    with stack:
        name = f"slmsql_bench_{os.getpid()}"
        base, _, _ = url.rpartition("/")
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        try:
            with psycopg.connect(f"{base}/{name}", autocommit=True) as conn:
                with conn.cursor() as cur:
                    fill(cur.execute, lambda sql, r: cur.executemany(sql.replace("?", "%s"), r), data)
            yield f"{base}/{name}"
        finally:
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def measure(spec: str, repeats: int) -> dict[str, float]:
    from slmsql_cli import database

    database._LIVE.clear()
    database._MEMO.clear()
    t = time.perf_counter()
    db = database.open_database(spec)
    cold = time.perf_counter() - t
    database._LIVE.clear()
    database._MEMO.clear()
    t = time.perf_counter()
    db = database.open_database(spec)
    warm = time.perf_counter() - t
    t = time.perf_counter()
    db.relevant_values("Which customers from Lisbon bought Product 7?")
    index = time.perf_counter() - t
    rounds = []
    for i in range(repeats):
        sqls = [f"{sql} -- round {i}" for sql in CANDIDATES]  # distinct text: no result cache hit
        t = time.perf_counter()
        results = db.run_many(sqls, timeout=30)
        rounds.append(time.perf_counter() - t)
        failed = [r.error for r in results if r is not None and not r.ok]
        assert not failed, failed
    return {
        "open (cold)": cold,
        "open (cached)": warm,
        "value index build": index,
        "8 candidates": statistics.median(rounds),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--orders", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--pg-url", default=os.environ.get("SLMSQL_PG_URL"))
    args = parser.parse_args()
    import duckdb

    data = rows(args.orders)
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["SLMSQL_CACHE_DIR"] = str(Path(tmp) / "cache")
        lite = Path(tmp) / "shop.sqlite"
        with sqlite3.connect(lite) as conn:
            fill(conn.execute, conn.executemany, data)
        conn.close()
        duck = Path(tmp) / "shop.duckdb"
        dconn = duckdb.connect(str(duck))
        fill(dconn.execute, dconn.executemany, data)
        dconn.close()
        results["SQLite"] = measure(str(lite), args.repeats)
        results["DuckDB"] = measure(str(duck), args.repeats)
        with postgres(args.pg_url, data) as pg_url:
            if pg_url:
                results["PostgreSQL"] = measure(pg_url, args.repeats)
    steps = list(next(iter(results.values())))
    print(f"| {args.orders:,} orders | " + " | ".join(steps) + " |")
    print("|---|" + "---:|" * len(steps))
    for engine, figures in results.items():
        print(f"| {engine} | " + " | ".join(f"{figures[s] * 1000:.0f} ms" for s in steps) + " |")


if __name__ == "__main__":
    main()

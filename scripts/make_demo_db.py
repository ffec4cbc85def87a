#!/usr/bin/env python3
"""Write the demo database slmsql_cli/data/bookshop.sqlite (and check its example questions).

A small, realistic bookshop: authors, genres, books, stores, employees, customers, orders and
order items, with declared primary and foreign keys, ISO dates as text, and a few awkward names
(apostrophes, a slash) that value retrieval and SQL quoting must cope with. Deterministic: a
seeded generator, no network, so rerunning it gives the same rows.

    python scripts/make_demo_db.py            # writes slmsql_cli/data/bookshop.sqlite
    python scripts/make_demo_db.py out.sqlite
"""

from __future__ import annotations

import json
import os
import random
import sqlite3
import sys
from datetime import date, timedelta
from pathlib import Path

DATA = Path(__file__).resolve().parents[1] / "slmsql_cli" / "data"
SEED = 20240611

SCHEMA = """
CREATE TABLE authors (
    author_id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    country TEXT,
    birth_year INTEGER
);
CREATE TABLE genres (
    genre_id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE
);
CREATE TABLE books (
    book_id INTEGER PRIMARY KEY,
    title TEXT NOT NULL,
    author_id INTEGER NOT NULL REFERENCES authors (author_id),
    genre_id INTEGER REFERENCES genres (genre_id),
    published_year INTEGER,
    price REAL NOT NULL,
    pages INTEGER,
    isbn TEXT UNIQUE
);
CREATE TABLE stores (
    store_id INTEGER PRIMARY KEY,
    city TEXT NOT NULL,
    address TEXT,
    opened_on TEXT
);
CREATE TABLE employees (
    employee_id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    store_id INTEGER REFERENCES stores (store_id),
    role TEXT,
    hired_on TEXT,
    salary REAL
);
CREATE TABLE customers (
    customer_id INTEGER PRIMARY KEY,
    first_name TEXT NOT NULL,
    last_name TEXT NOT NULL,
    email TEXT UNIQUE,
    city TEXT,
    joined_on TEXT
);
CREATE TABLE orders (
    order_id INTEGER PRIMARY KEY,
    customer_id INTEGER NOT NULL REFERENCES customers (customer_id),
    store_id INTEGER REFERENCES stores (store_id),
    employee_id INTEGER REFERENCES employees,
    order_date TEXT NOT NULL,
    status TEXT NOT NULL
);
CREATE TABLE order_items (
    order_id INTEGER NOT NULL REFERENCES orders (order_id),
    book_id INTEGER NOT NULL REFERENCES books (book_id),
    quantity INTEGER NOT NULL,
    unit_price REAL NOT NULL,
    PRIMARY KEY (order_id, book_id)
);
"""

GENRES = [
    "Classic",
    "Science Fiction",
    "Fantasy",
    "Mystery",
    "Philosophy",
    "Poetry",
    "Historical Fiction",
    "Children",
]

# (author, country, birth year, [(title, genre, year, pages)])
CATALOGUE = [
    (
        "Jane Austen",
        "United Kingdom",
        1775,
        [
            ("Pride and Prejudice", "Classic", 1813, 432),
            ("Emma", "Classic", 1815, 474),
            ("Persuasion", "Classic", 1817, 249),
            ("Sense and Sensibility", "Classic", 1811, 409),
        ],
    ),
    (
        "Charles Dickens",
        "United Kingdom",
        1812,
        [
            ("Great Expectations", "Classic", 1861, 505),
            ("Bleak House", "Classic", 1853, 1017),
            ("A Tale of Two Cities", "Historical Fiction", 1859, 489),
            ("Oliver Twist", "Classic", 1838, 608),
            ("David Copperfield", "Classic", 1850, 882),
            ("Hard Times", "Classic", 1854, 352),
        ],
    ),
    (
        "Flann O'Brien",
        "Ireland",
        1911,
        [("At Swim-Two-Birds", "Classic", 1939, 240), ("The Third Policeman", "Fantasy", 1967, 200)],
    ),
    (
        "Søren Kierkegaard",
        "Denmark",
        1813,
        [("Either/Or", "Philosophy", 1843, 640), ("Fear and Trembling", "Philosophy", 1843, 160)],
    ),
    (
        "Mary Shelley",
        "United Kingdom",
        1797,
        [("Frankenstein", "Science Fiction", 1818, 280), ("The Last Man", "Science Fiction", 1826, 479)],
    ),
    (
        "H. G. Wells",
        "United Kingdom",
        1866,
        [
            ("The Time Machine", "Science Fiction", 1895, 118),
            ("The War of the Worlds", "Science Fiction", 1898, 192),
            ("The Invisible Man", "Science Fiction", 1897, 176),
        ],
    ),
    (
        "Jules Verne",
        "France",
        1828,
        [
            ("Twenty Thousand Leagues Under the Seas", "Science Fiction", 1870, 426),
            ("Around the World in Eighty Days", "Classic", 1872, 256),
        ],
    ),
    (
        "Arthur Conan Doyle",
        "United Kingdom",
        1859,
        [
            ("A Study in Scarlet", "Mystery", 1887, 188),
            ("The Hound of the Baskervilles", "Mystery", 1902, 256),
            ("The Sign of the Four", "Mystery", 1890, 160),
        ],
    ),
    (
        "Agatha Christie",
        "United Kingdom",
        1890,
        [
            ("The Mysterious Affair at Styles", "Mystery", 1920, 296),
            ("The Secret Adversary", "Mystery", 1922, 320),
        ],
    ),
    (
        "Wilkie Collins",
        "United Kingdom",
        1824,
        [("The Moonstone", "Mystery", 1868, 528), ("The Woman in White", "Mystery", 1859, 720)],
    ),
    (
        "Lewis Carroll",
        "United Kingdom",
        1832,
        [
            ("Alice's Adventures in Wonderland", "Children", 1865, 192),
            ("Through the Looking-Glass", "Children", 1871, 224),
        ],
    ),
    ("L. Frank Baum", "United States", 1856, [("The Wonderful Wizard of Oz", "Children", 1900, 259)]),
    ("Emily Dickinson", "United States", 1830, [("Poems", "Poetry", 1890, 152)]),
    (
        "W. B. Yeats",
        "Ireland",
        1865,
        [("The Wild Swans at Coole", "Poetry", 1917, 114), ("The Tower", "Poetry", 1928, 112)],
    ),
    ("Walt Whitman", "United States", 1819, [("Leaves of Grass", "Poetry", 1855, 145)]),
    (
        "Leo Tolstoy",
        "Russia",
        1828,
        [("War and Peace", "Historical Fiction", 1869, 1225), ("Anna Karenina", "Classic", 1878, 864)],
    ),
    (
        "Fyodor Dostoevsky",
        "Russia",
        1821,
        [("Crime and Punishment", "Classic", 1866, 671), ("The Brothers Karamazov", "Classic", 1880, 796)],
    ),
    (
        "Victor Hugo",
        "France",
        1802,
        [
            ("Les Misérables", "Historical Fiction", 1862, 1462),
            ("The Hunchback of Notre-Dame", "Historical Fiction", 1831, 940),
        ],
    ),
    (
        "Mark Twain",
        "United States",
        1835,
        [
            ("Adventures of Huckleberry Finn", "Classic", 1884, 366),
            ("The Adventures of Tom Sawyer", "Children", 1876, 274),
        ],
    ),
    ("Herman Melville", "United States", 1819, [("Moby-Dick", "Classic", 1851, 635)]),
    (
        "Friedrich Nietzsche",
        "Germany",
        1844,
        [
            ("Thus Spoke Zarathustra", "Philosophy", 1883, 352),
            ("Beyond Good and Evil", "Philosophy", 1886, 240),
        ],
    ),
    ("Marcus Aurelius", "Roman Empire", 121, [("Meditations", "Philosophy", 180, 254)]),
    (
        "George MacDonald",
        "United Kingdom",
        1824,
        [("Phantastes", "Fantasy", 1858, 323), ("The Princess and the Goblin", "Children", 1872, 220)],
    ),
    ("William Morris", "United Kingdom", 1834, [("The Well at the World's End", "Fantasy", 1896, 496)]),
    ("Ngũgĩ wa Thiong'o", "Kenya", 1938, [("Weep Not, Child", "Historical Fiction", 1964, 160)]),
]

STORES = [
    ("Dublin", "12 Dawson Street", "2009-03-14"),
    ("Galway", "Unit 4/5 Shop Street", "2015-09-01"),
    ("Cork", "88 Oliver Plunkett Street", "2019-05-20"),
]
ROLES = ["Manager", "Bookseller", "Bookseller"]
FIRST = [
    "Aoife",
    "Ciara",
    "Niamh",
    "Sean",
    "Liam",
    "Conor",
    "Emma",
    "Sophie",
    "Jack",
    "James",
    "Grace",
    "Ella",
    "Daniel",
    "Adam",
    "Chloe",
    "Fionn",
    "Oisin",
    "Saoirse",
    "Cian",
    "Roisin",
    "Mary",
    "Patrick",
    "Maeve",
    "Eoin",
]
LAST = [
    "Murphy",
    "Kelly",
    "O'Sullivan",
    "Walsh",
    "Smith",
    "O'Brien",
    "Byrne",
    "Ryan",
    "O'Connor",
    "O'Neill",
    "Reilly",
    "Doyle",
    "McCarthy",
    "Gallagher",
    "Doherty",
    "Kennedy",
    "Lynch",
    "Murray",
    "Quinn",
    "Moore",
]
CITIES = [
    "Dublin",
    "Dublin",
    "Dublin",
    "Galway",
    "Galway",
    "Cork",
    "Cork",
    "Limerick",
    "Waterford",
    "Kilkenny",
]
STATUSES = ["delivered"] * 8 + ["shipped", "cancelled"]


def _day(rng: random.Random, start: date, end: date) -> date:
    return start + timedelta(days=rng.randrange((end - start).days + 1))


def build(path: Path) -> None:
    rng = random.Random(SEED)
    if path.exists():
        path.unlink()
    conn = sqlite3.connect(path)
    conn.executescript(SCHEMA)
    conn.executemany("INSERT INTO genres VALUES (?, ?)", enumerate(GENRES, start=1))
    genre_id = {g: i for i, g in enumerate(GENRES, start=1)}

    book_id = 0
    prices: dict[int, float] = {}
    for author_id, (name, country, born, books) in enumerate(CATALOGUE, start=1):
        conn.execute("INSERT INTO authors VALUES (?, ?, ?, ?)", (author_id, name, country, born))
        for title, genre, year, pages in books:
            book_id += 1
            price = round(
                rng.choice([6.99, 7.99, 8.99, 9.99, 10.99, 12.99, 14.99]) + (2.0 if pages > 600 else 0.0), 2
            )
            if pages > 1400:  # one clearly most expensive book (the unabridged Les Misérables)
                price = 24.99
            prices[book_id] = price
            isbn = "978" + "".join(str(rng.randrange(10)) for _ in range(10))
            conn.execute(
                "INSERT INTO books VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (book_id, title, author_id, genre_id[genre], year, price, pages, isbn),
            )

    conn.executemany(
        "INSERT INTO stores VALUES (?, ?, ?, ?)", [(i, *s) for i, s in enumerate(STORES, start=1)]
    )
    employees: list[tuple[int, str, int, str, str, float]] = []
    for store_id in range(1, len(STORES) + 1):
        for role in ROLES:
            employee_id = len(employees) + 1
            name = f"{rng.choice(FIRST)} {rng.choice(LAST)}"
            hired = _day(rng, date(2010, 1, 1), date(2023, 6, 30)).isoformat()
            salary = float(
                rng.randrange(32, 40) * 1000 if role == "Bookseller" else rng.randrange(48, 56) * 1000
            )
            employees.append((employee_id, name, store_id, role, hired, salary))
    conn.executemany("INSERT INTO employees VALUES (?, ?, ?, ?, ?, ?)", employees)

    customers: list[tuple[int, str, str, str, str, str]] = []
    seen_emails: set[str] = set()
    while len(customers) < 80:
        first, last = rng.choice(FIRST), rng.choice(LAST)
        email = f"{first}.{last}".lower().replace("'", "") + "@example.com"
        if email in seen_emails:
            continue
        seen_emails.add(email)
        joined = _day(rng, date(2021, 1, 1), date(2024, 10, 31)).isoformat()
        customers.append((len(customers) + 1, first, last, email, rng.choice(CITIES), joined))
    conn.executemany("INSERT INTO customers VALUES (?, ?, ?, ?, ?, ?)", customers)

    # A few customers never order (a classic question); the rest order 1-7 times.
    buyers = [c for c in customers if c[0] % 13 != 0]
    order_id = 0
    for customer in buyers:
        for _ in range(rng.randint(1, 5)):
            order_id += 1
            joined_on = date.fromisoformat(customer[5])
            ordered = _day(rng, max(joined_on, date(2023, 1, 1)), date(2024, 12, 31))
            store_id = rng.choice([1, 1, 2, 3])
            staff = [e[0] for e in employees if e[2] == store_id]
            conn.execute(
                "INSERT INTO orders VALUES (?, ?, ?, ?, ?, ?)",
                (
                    order_id,
                    customer[0],
                    store_id,
                    rng.choice(staff),
                    ordered.isoformat(),
                    rng.choice(STATUSES),
                ),
            )
            # Dickens sells best, so "best-selling author" has one clear answer.
            weights = [3 if b <= 10 else 1 for b in prices]
            chosen = set(rng.choices(list(prices), weights=weights, k=rng.randint(1, 3)))
            for b in sorted(chosen):
                conn.execute(
                    "INSERT INTO order_items VALUES (?, ?, ?, ?)", (order_id, b, rng.randint(1, 3), prices[b])
                )
    conn.commit()
    conn.execute("VACUUM")
    conn.close()


def check_questions(db: Path, questions: Path) -> None:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    for item in json.loads(questions.read_text(encoding="utf-8")):
        rows = conn.execute(item["sql"]).fetchall()
        if not rows:
            raise SystemExit(f"gold SQL returns no rows: {item['question']}")
    conn.close()


def main() -> None:
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else DATA / "bookshop.sqlite"
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".tmp")
    build(tmp)
    os.replace(tmp, target)
    check_questions(target, DATA / "bookshop_questions.json")
    print(f"wrote {target} ({target.stat().st_size // 1024} KB)")


if __name__ == "__main__":
    main()

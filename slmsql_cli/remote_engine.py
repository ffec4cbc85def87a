"""An engine behind an OpenAI-compatible HTTP API: vLLM, llama.cpp's `llama-server`,
llama-cpp-python's `python -m llama_cpp.server`, Ollama. It stands where `engine.Engine` stands.

Design: the server generates, this machine keeps the tokenizer and the chat template.

* `--model` still names the model, as a GGUF on this machine (a path, an alias or a repo id, as
  always). It is loaded *vocab-only* by the in-process engine's own reader (`_internals.Model`):
  llama.cpp reads the tokenizer and the metadata, no weights (a few MB, well under a second).
  That is all the pipeline needs locally: the chat template and the BOS/EOS text to render the
  prompt exactly as the in-process engine does (`pipeline.chat_text`), and the tokenizer for the
  prompt budget and schema pruning. `--endpoint URL` says where to generate, `--served-model
  NAME` which of the server's models (default: the one whose name matches the local model's, else
  the server's only model). The merge model may have its own (`--merge-endpoint`,
  `--merge-served-model`); without them it is looked for on the same server.
* The rendered text goes to `/v1/completions` (not `/v1/chat/completions`: the server's template
  could differ from the one the model was trained with). Where the vocabulary says its tokenizer
  adds BOS itself (Gemma, Llama; not Qwen), the rendered leading BOS is left off the text, because
  every one of these servers adds it back when it tokenizes a text prompt. The server's
  `usage.prompt_tokens` is compared with the local count; a difference is reported once (the
  served weights have another tokenizer, or the server wraps the prompt in a template of its own:
  Ollama does unless the model's Modelfile has `TEMPLATE {{ .Prompt }}`).
* Sampling: the same temperature, top-p, max tokens and stop strings (`</answer>`), and the
  samplers these servers add on top of OpenAI's are turned off (top-k 0, min-p 0, repeat and
  repetition penalty 1), so temperature 0 is plain greedy decoding, as in-process.
* N candidates: one request with `n=N` and the seed. A server that answers with fewer choices
  (llama-cpp-python ignores `n`) gets the missing candidates as single requests in flight together,
  candidate i with seed `seed + i`, as in-process; the engine remembers that and afterwards sends N
  single requests at once. Deviation: with `n` in one request the server derives the N streams
  from the one seed, so candidate i is not the in-process candidate i at temperature > 0.
* Statistics: `prompt_tokens` is the server's count, `prompt_tokens_cached` its cached prompt
  tokens where it says (`usage.prompt_tokens_details.cached_tokens`: vLLM with prefix caching),
  `requests` the HTTP requests made. Prompt and decode seconds are the server's business: only the
  wall clock is measured here. Per-candidate token counts come from `usage.completion_tokens` of a
  single-choice response, else from the local tokenizer.
* Non-streaming requests: `on_token` is called once before each request (a cancelled `serve` job
  stops there) and once per generated token when the response is in, so progress counters move;
  a request in flight runs to its end or to its deadline.

Faults: an unreachable server is one `UserError` naming the URL; HTTP 429 and 503 are retried
after `Retry-After` (a value that is not a finite number of seconds is ignored) or a doubling
delay, at most `len(RETRY_DELAYS)` times; an unknown served model lists the first `MAX_LISTED`
of the server's models. Every request has one deadline for its whole response, headers and body
(`--endpoint-timeout`, not a time per read: a server that sends a byte every second still ends
there), and a response over `MAX_BODY` bytes is refused: the response is read in a thread of its
own while the caller waits at most that long. The API key comes from an environment variable
(`SLMSQL_API_KEY`, for a separate merge server `SLMSQL_MERGE_API_KEY`; a `user:password@` in the
URL is refused) and goes only into the Authorization header. Whatever the server sends that is
shown or recorded (its error text, model names, completions) has the key blanked out in any case
and across line breaks; its error text and model names are also cut short and their control
characters escaped (`safe_text.visible`). A response without usable text (not JSON, JSON nested
too deeply, no choices) is a candidate with no SQL, and a warning says so once.
"""

from __future__ import annotations

import json
import math
import os
import re
import threading
import time
import weakref
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from slmsql_cli import _internals, engine_protocol, llama_logs, safe_text
from slmsql_cli.cache import warn
from slmsql_cli.engine_protocol import Completion, GenerationStats, PromptProgress, SamplingParams
from slmsql_cli.errors import UserError

API_KEY_ENV = "SLMSQL_API_KEY"
MERGE_API_KEY_ENV = "SLMSQL_MERGE_API_KEY"
DEFAULT_TIMEOUT = 600.0  # seconds per request: N x 1,024 tokens on a busy CPU server take minutes
RETRY_STATUSES = frozenset({429, 503})
RETRY_DELAYS = (0.5, 1.0, 2.0, 4.0, 8.0)  # waits before the retries of a 429/503 (Retry-After wins)
MAX_RETRY_AFTER = 30.0  # a longer Retry-After is cut to this
MAX_IN_FLIGHT = 16  # single-candidate requests one `sample` keeps in flight
MAX_BODY = 16 * 2**20  # bytes in one response: N x 1,024 tokens of JSON are well under 1 MiB
MAX_MESSAGE = 300  # characters of a server's error text shown
MAX_LISTED = 10  # model names shown where the server's list is named
MAX_NAME = 80  # characters of one model name shown


@dataclass(frozen=True)
class Endpoint:
    """Where a model generates: the server's OpenAI base URL (…/v1) and, optionally, the served
    model's name; the engine reads the API key from the environment variable `api_key_env`, never
    from the URL (`parse` refuses user:password@); `shown` is the printable form."""

    url: str = field(repr=False)
    served_model: str | None = None
    api_key_env: str = API_KEY_ENV
    timeout: float = DEFAULT_TIMEOUT

    @classmethod
    def parse(
        cls,
        url: str,
        served_model: str | None = None,
        *,
        api_key_env: str = API_KEY_ENV,
        timeout: float | None = None,
    ) -> Endpoint:
        """Check and normalize a --endpoint URL: http(s) only, no user:password@ (the key goes in
        `api_key_env`); a bare host gets `/v1`; a query is dropped."""
        parts = urlsplit(url.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise UserError(
                f"--endpoint must be an http(s) URL, got {public_url(url)!r}",
                "e.g. --endpoint http://127.0.0.1:8000/v1 (the server's OpenAI base URL)",
            )
        if "@" in parts.netloc:  # a password in a URL ends up in shell history, logs and results files
            raise UserError(
                f"--endpoint must not hold a user name or password: {public_url(url)}",
                f"put the server's key in {api_key_env} (it is sent as a bearer token) and give the URL without user:password@",
            )
        path = parts.path.rstrip("/") or "/v1"
        normalized = urlunsplit((parts.scheme, parts.netloc, path, "", ""))
        return cls(normalized, served_model or None, api_key_env, timeout or DEFAULT_TIMEOUT)

    @property
    def shown(self) -> str:
        """The URL to print and record: without user:password@."""
        return public_url(self.url)


def public_url(url: str) -> str:
    """`url` without user:password@ and query: safe to print and to record in results files."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    netloc = host + (f":{port}" if port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def endpoints(
    url: str | None,
    served_model: str | None,
    merge_url: str | None,
    merge_served_model: str | None,
    timeout: float | None,
) -> tuple[Endpoint | None, Endpoint | None]:
    """The generator's and the merge model's endpoints from the command-line options.

    The merge model defaults to the generator's server (and key); with that server and no
    --merge-served-model it inherits --served-model, so a generator that revises its own drafts
    shares one engine. A merge server of its own reads its key from SLMSQL_MERGE_API_KEY."""
    main = Endpoint.parse(url, served_model, timeout=timeout) if url else None
    if merge_url:
        merge = Endpoint.parse(merge_url, merge_served_model, api_key_env=MERGE_API_KEY_ENV, timeout=timeout)
        if main is not None and merge.url == main.url:
            merge = Endpoint(merge.url, merge.served_model or main.served_model, API_KEY_ENV, merge.timeout)
    elif main is not None:
        merge = Endpoint(main.url, merge_served_model or main.served_model, API_KEY_ENV, main.timeout)
    else:
        merge = None
    return main, merge


@dataclass
class RemoteStats(GenerationStats):
    """`GenerationStats` of a server: its prompt token count, cached tokens where it reports them."""

    prompt_tokens_cached: int | None = None
    requests: int = 0
    endpoint: str = ""
    served_model: str = ""
    bad_responses: int = 0  # responses without usable text (each candidate of them has no SQL)

    def as_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            **super().as_dict(),
            "prompt_tokens_cached": self.prompt_tokens_cached,
            "requests": self.requests,
            "endpoint": self.endpoint,
            "served_model": self.served_model,
        }
        if self.bad_responses:
            doc["bad_responses"] = self.bad_responses
        return doc


def key_pattern(key: str) -> re.Pattern[str]:
    """`key` as a server may echo it: in any case, and split by white space or an escaped line
    break (`\\n` written out) between any two of its characters."""
    gap = r"(?:\s|\\[nrt])*"
    return re.compile(gap.join(re.escape(char) for char in key), re.IGNORECASE)


def shown_text(text: str, limit: int = MAX_MESSAGE) -> str:
    """A server's text for one line: white space runs as one space, control characters escaped,
    at most `limit` characters (then "…")."""
    text = safe_text.visible(" ".join(text.split()))
    return text[:limit] + ("…" if len(text) > limit else "")


class _TooLarge(Exception):
    """A response body over MAX_BODY bytes."""


@dataclass
class _Response:
    """A whole response, read within the deadline: status, headers and at most MAX_BODY bytes."""

    status_code: int
    headers: Any  # httpx.Headers
    content: bytes

    def json(self) -> Any:
        """The body as JSON; ValueError when it is not JSON or nests deeper than the parser can go."""
        try:
            return json.loads(self.content)
        except RecursionError:
            raise ValueError("JSON nested too deeply") from None

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")


@dataclass
class _Reply:
    """One parsed response: its choices (OpenAI's dicts: index, text, finish_reason, maybe
    stop_reason), the usage counts it gave, and whether it was usable at all."""

    choices: list[dict[str, Any]] = field(default_factory=list)
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cached_tokens: int | None = None
    usable: bool = True


class RemoteEngine:
    """A vocab-only local GGUF (template, tokenizer) and an OpenAI-compatible server that generates."""

    prompt_cache: bool = False  # nothing is stored here; the server's prefix cache is its own
    threads: int = 0  # no local compute threads

    def __init__(
        self, model_path: str | Path, endpoint: Endpoint, *, name: str | None = None, n_ctx: int | None = None
    ) -> None:
        """`model_path`: the local GGUF, `name`: the --model spec it came from (to find the served
        model by name). Asks the server for its models now: an unreachable server or an unknown
        --served-model fails here, before any question."""
        import httpx

        self.path = Path(model_path)
        _internals.check_gguf_file(self.path)
        self.endpoint = endpoint
        llama_logs.silence()
        try:
            vocab = _internals.Model(self.path, vocab_only=True)
        except (ValueError, RuntimeError) as exc:
            raise UserError(
                f"llama.cpp could not read the vocabulary of {self.path.name}: {exc}",
                "the file may be truncated or corrupt; download or export it again",
            ) from None
        self._vocab = vocab
        self._free_vocab = weakref.finalize(self, vocab.close)  # an engine nobody closes: when collected
        self._lock = threading.Lock()  # one tokenizer call at a time (eval --concurrency)
        self._texts: dict[tuple[int, ...], str] = {}  # recent prompts' tokens -> their text (tokenize)
        self.metadata: dict[str, str] = vocab.metadata()
        self.architecture = self.metadata.get("general.architecture", "")
        # a vocab-only model has no hyperparameters loaded: the context length is read from the metadata
        trained = self.metadata.get(f"{self.architecture}.context_length", "")
        self.n_ctx_train = int(trained) if trained.isdigit() else 4096
        self.n_ctx_limit = min(n_ctx or self.n_ctx_train, self.n_ctx_train)
        self._bos_text = vocab.special_token_text("bos")
        self._eos_text = vocab.special_token_text("eos")
        self._adds_bos = vocab.adds_bos()
        self._single = False  # the server ignores `n`: N single requests
        self._checked_count = False
        key = os.environ.get(endpoint.api_key_env, "").strip()
        self._key = key or None
        self._key_pattern = key_pattern(key) if key else None
        # identity: a compressed body could unpack to many times MAX_BODY before it is counted
        headers = {"Accept-Encoding": "identity", **({"Authorization": f"Bearer {key}"} if key else {})}
        self._client = httpx.Client(
            base_url=public_url(endpoint.url).rstrip("/") + "/",
            headers=headers,
            # per read; the whole response has its own deadline (`_fetch`)
            timeout=httpx.Timeout(endpoint.timeout, connect=min(endpoint.timeout, 10.0)),
            limits=httpx.Limits(max_connections=MAX_IN_FLIGHT * 4, max_keepalive_connections=MAX_IN_FLIGHT),
            follow_redirects=False,
        )
        self._closed = False
        try:
            self.served_model = self._choose_model(name)
        except BaseException:
            self.close()
            raise
        self._model_shown = self._name(self.served_model)  # the name printed and recorded

    # ---- what the pipeline reads ------------------------------------------------------------
    @property
    def device(self) -> str:
        return f"server {self.endpoint.shown} ({self._model_shown})"

    @property
    def closed(self) -> bool:
        return self._closed

    def tokenize(self, text: str) -> list[int]:
        self._check_open()
        with self._lock:
            tokens = self._vocab.tokenize(text.encode("utf-8"), add_special=False, parse_special=True)
            # The pipeline counts a prompt's tokens and then samples those tokens: the server is
            # sent the text they came from (not every server takes token arrays; llama_cpp.server
            # refuses them), so recent texts are kept by their tokens (a few: K questions in flight).
            if len(self._texts) >= 64:
                self._texts.pop(next(iter(self._texts)))
            self._texts[tuple(tokens)] = text
            return tokens

    def chat_template(self) -> str | None:
        return self.metadata.get("tokenizer.chat_template")

    def special_token_text(self, which: str) -> str:
        return {"bos": self._bos_text, "eos": self._eos_text}[which]

    def close_context(self) -> None:
        """Nothing to free here (the server owns its KV cache)."""

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._client.close()
            self._free_vocab()

    def __enter__(self) -> RemoteEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"the engine for {self.path.name} is closed; load the model again")

    # ---- the served model -------------------------------------------------------------------
    def server_models(self) -> list[str] | None:
        """The model ids of GET /models; None when the server does not list them."""
        response = self._send("GET", "models", None)
        if response.status_code != 200:
            self._refuse_if_unauthorized(response)
            return None
        try:
            data = response.json().get("data")
            return [str(m["id"]) for m in data if isinstance(m, dict) and "id" in m]
        except (ValueError, AttributeError, TypeError):
            return None

    def _name(self, model: str) -> str:
        """A model name as shown: the key blanked out, control characters escaped, cut short."""
        return shown_text(self._redact(model), MAX_NAME)

    def _names(self, listed: list[str]) -> str:
        """The first MAX_LISTED of the server's model names, and how many more there are."""
        shown = ", ".join(self._name(m) for m in listed[:MAX_LISTED])
        more = len(listed) - MAX_LISTED
        return shown + (f", … and {more:,} more" if more > 0 else "")

    def _choose_model(self, name: str | None) -> str:
        listed = self.server_models()
        wanted = self.endpoint.served_model
        if wanted is not None:
            if listed is not None and wanted not in listed:
                raise self._unknown_model(wanted, listed)
            return wanted
        if listed:
            names = {self.path.name.lower(), self.path.stem.lower()}
            if name:
                from slmsql_cli.models import lookup

                known = lookup(name)  # an alias also goes by its Hub repo's name (what vLLM serves)
                for spec in (name, known.repo if known else name):
                    names |= {spec.lower(), spec.lower().split(":", 1)[0].rsplit("/", 1)[-1]}
            for model in listed:
                low = model.lower()
                if low in names or low.rsplit("/", 1)[-1] in names or Path(low).stem in names:
                    return model
            if len(listed) == 1:
                return listed[0]
            raise UserError(
                f"the model server at {self.endpoint.shown} serves {len(listed):,} models and none is named "
                f"like {self.path.name}: {self._names(listed)}",
                "choose one with --served-model NAME",
            )
        return name or self.path.stem

    def _unknown_model(self, wanted: str, listed: list[str] | None) -> UserError:
        served = self._names(listed) if listed else "(it lists none)"
        return UserError(
            f"the model server at {self.endpoint.shown} has no model {self._name(wanted)!r}; it serves: {served}",
            "pass one of them with --served-model (or --merge-served-model for the merge model)",
        )

    # ---- HTTP -----------------------------------------------------------------------------
    def _send(self, method: str, path: str, body: dict[str, Any] | None) -> _Response:
        """One request, retried on 429/503 with a bounded backoff; transport failures become one
        UserError naming the URL. Returns the whole response of any other status."""
        for attempt in range(len(RETRY_DELAYS) + 1):
            response = self._fetch(method, path, body)
            if response.status_code not in RETRY_STATUSES or attempt == len(RETRY_DELAYS):
                return response
            time.sleep(self._retry_delay(response, attempt))
        raise AssertionError("unreachable")

    def _fetch(self, method: str, path: str, body: dict[str, Any] | None) -> _Response:
        """One request and its whole response within `endpoint.timeout` seconds, at most MAX_BODY
        bytes. httpx's timeouts are per read, so a server that drips a byte at a time would never
        time out: the response is read in a daemon thread and the caller waits for it at most
        the timeout. A reader left behind stops at its next byte (or its read timeout)."""
        import httpx

        box: dict[str, Any] = {}
        done, stop = threading.Event(), threading.Event()

        def read() -> None:
            try:
                with self._client.stream(method, path, json=body) as response:
                    declared = response.headers.get("content-length", "")
                    if declared.isdigit() and int(declared) > MAX_BODY:
                        raise _TooLarge
                    chunks, size = [], 0
                    for chunk in response.iter_bytes():
                        if stop.is_set():
                            return
                        size += len(chunk)
                        if size > MAX_BODY:
                            raise _TooLarge
                        chunks.append(chunk)
                    box["response"] = _Response(response.status_code, response.headers, b"".join(chunks))
            except BaseException as exc:  # handed to the caller, who is waiting
                box["error"] = exc
            finally:
                done.set()

        threading.Thread(target=read, name="slmsql-remote-read", daemon=True).start()
        try:
            finished = done.wait(self.endpoint.timeout)
        finally:
            stop.set()  # also on Ctrl-C: the reader drops the response at its next chunk
        shown = self.endpoint.shown
        error = box.get("error")
        if not finished or isinstance(error, httpx.TimeoutException):
            raise UserError(
                f"the model server at {shown} did not answer within {self.endpoint.timeout:g}s",
                "raise --endpoint-timeout, or lower -n or --max-tokens",
            )
        if isinstance(error, _TooLarge):
            raise UserError(
                f"the model server at {shown} sent a response over {MAX_BODY // 2**20} MiB; it was not read",
                "check --endpoint: a completion or a model list is far smaller",
            )
        if isinstance(error, httpx.TransportError):
            raise UserError(
                f"cannot reach the model server at {shown}: {shown_text(self._redact(str(error))) or type(error).__name__}",
                "start the server, or check --endpoint (its OpenAI base URL, e.g. http://host:8000/v1)",
            )
        if error is not None:
            raise error
        response: _Response = box["response"]
        return response

    @staticmethod
    def _retry_delay(response: _Response, attempt: int) -> float:
        """Retry-After in seconds (0 to MAX_RETRY_AFTER); a value that is not a finite number
        (an HTTP date, `nan`, `inf`) is ignored for the doubling delay."""
        try:
            seconds = float(response.headers.get("retry-after", ""))
        except ValueError:
            seconds = math.nan
        if not math.isfinite(seconds):
            return RETRY_DELAYS[attempt]
        return min(max(seconds, 0.0), MAX_RETRY_AFTER)

    def _redact(self, text: str) -> str:
        """`text` with the API key blanked out, in any case and across line breaks."""
        return self._key_pattern.sub("***", text) if self._key_pattern else text

    def _server_message(self, response: _Response) -> str:
        try:
            doc = response.json()
            error = doc.get("error", doc.get("detail", doc)) if isinstance(doc, dict) else doc
            message = error.get("message", error) if isinstance(error, dict) else error
            text = message if isinstance(message, str) else json.dumps(message)
        except ValueError:
            text = response.text
        return shown_text(self._redact(text))

    def _refuse_if_unauthorized(self, response: _Response) -> None:
        if response.status_code in (401, 403):
            env = self.endpoint.api_key_env
            raise UserError(
                f"the model server at {self.endpoint.shown} refused the request (HTTP {response.status_code}): "
                + (f"the API key in {env} was not accepted" if self._key else "it wants an API key"),
                f"set {env} to the server's key",
            )

    def _complete(self, body: dict[str, Any]) -> _Reply:
        response = self._send("POST", "completions", body)
        status, shown = response.status_code, self.endpoint.shown
        if status == 200:
            return self._parse(response)
        self._refuse_if_unauthorized(response)
        if status in RETRY_STATUSES:
            raise UserError(
                f"the model server at {shown} is still busy (HTTP {status}) after {len(RETRY_DELAYS) + 1} tries",
                "try again later, or send fewer requests at once (a lower eval --concurrency or -n)",
            )
        message = self._server_message(response)
        if status == 404 or (status == 400 and "model" in message.lower() and "exist" in message.lower()):
            listed = self.server_models()
            if listed is not None and self.served_model not in listed:
                raise self._unknown_model(self.served_model, listed)
            if status == 404:
                raise UserError(
                    f"the model server at {shown} has no /completions route (HTTP 404): {message}",
                    "--endpoint takes the server's OpenAI base URL, e.g. http://host:8000/v1",
                )
        raise UserError(
            f"the model server at {shown} refused the request (HTTP {status}): {message}",
            "check the server's log; a prompt longer than its context needs a larger server context",
        )

    def _parse(self, response: _Response) -> _Reply:
        try:
            doc = response.json()
        except ValueError:
            return _Reply(usable=False)
        if not isinstance(doc, dict) or not isinstance(doc.get("choices"), list):
            return _Reply(usable=False)
        choices = [c for c in doc["choices"] if isinstance(c, dict)]
        usage: dict[str, Any] = doc["usage"] if isinstance(doc.get("usage"), dict) else {}
        details = usage.get("prompt_tokens_details")
        cached = details.get("cached_tokens") if isinstance(details, dict) else None
        return _Reply(
            choices=choices,
            prompt_tokens=_int(usage.get("prompt_tokens")),
            completion_tokens=_int(usage.get("completion_tokens")),
            cached_tokens=_int(cached),
            usable=bool(choices),
        )

    # ---- sampling -------------------------------------------------------------------------
    def _body(self, prompt: str | list[int], params: SamplingParams, n: int, seed: int) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.served_model,
            "prompt": prompt,
            "max_tokens": params.max_tokens,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "n": n,
            "seed": seed,
            "stream": False,
            # what llama.cpp, vLLM and Ollama sample with unless told: off, as in-process
            "top_k": 0,  # all tokens (llama.cpp and vLLM >= 0.8 read 0 so; older vLLM wanted -1)
            "min_p": 0.0,
            "repeat_penalty": 1.0,
            "repetition_penalty": 1.0,
            "presence_penalty": 0.0,
            "frequency_penalty": 0.0,
        }
        if params.stop:
            body["stop"] = list(params.stop)
        if params.ignore_eos:
            body["ignore_eos"] = True
            body["min_tokens"] = params.max_tokens
        return body

    def sample(
        self,
        prompt: str | list[int],
        params: SamplingParams,
        on_token: Callable[[int], None] | None = None,
        on_prompt: PromptProgress | None = None,
    ) -> tuple[list[Completion], GenerationStats]:
        """Draw `params.n` completions of `prompt` on the server (see the module docstring).
        `on_prompt` is never called: a server does not say how far it has read a prompt. A
        constraint is refused: the server draws the tokens, with its own sampler."""
        self._check_open()
        if params.constraint is not None:
            raise UserError(
                f"{self.endpoint.shown} samples with its own sampler, which slmsql cannot constrain",
                "leave out --constrain, or --endpoint to generate here with llama.cpp",
            )
        t0 = time.perf_counter()
        if isinstance(prompt, str):
            local_tokens = len(self.tokenize(prompt))
            sent: str | list[int] = prompt
            if self._adds_bos and self._bos_text and prompt.startswith(self._bos_text):
                sent = prompt[len(self._bos_text) :]
        else:
            local_tokens = len(prompt)
            with self._lock:
                text = self._texts.get(tuple(prompt))
            if text is not None:
                return self.sample(text, params, on_token)  # the text those tokens came from
            sent = list(prompt)  # a server that takes token arrays (vLLM does)
        if not local_tokens:
            raise UserError("empty prompt")
        stats = RemoteStats(endpoint=self.endpoint.shown, served_model=self._model_shown)
        tick = on_token or (lambda _i: None)
        n = params.n
        replies: dict[int, _Reply] = {}  # first candidate index -> its response
        rest = list(range(n))
        if not self._single:
            tick(0)
            first = self._complete(self._body(sent, params, n, params.seed))
            replies[0] = first
            if first.usable and len(first.choices) < n:
                self._single = True  # llama-cpp-python and others: one choice per request
            # an unusable reply stands for all N candidates (none has text)
            rest = list(range(len(first.choices), n)) if first.usable else []
        if rest:
            for i in rest:
                tick(i)
            workers = min(len(rest), MAX_IN_FLIGHT)
            with ThreadPoolExecutor(workers, thread_name_prefix="slmsql-remote") as pool:
                futures = {
                    i: pool.submit(self._complete, self._body(sent, params, 1, params.seed + i)) for i in rest
                }
                for i, future in futures.items():
                    replies[i] = future.result()
        completions = self._completions(replies, params, stats)
        for i, c in enumerate(completions):
            for _ in range(c.tokens):
                tick(i)
        stats.generated_tokens = sum(c.tokens for c in completions)
        if stats.prompt_tokens:
            expected = local_tokens
            if stats.prompt_tokens != expected and not self._checked_count:
                warn(
                    f"the model server at {self.endpoint.shown} counted {stats.prompt_tokens} prompt tokens "
                    f"where {self.path.name} has {expected}: it tokenizes or templates the prompt differently, "
                    "so its answers may differ from the in-process model's"
                )
            self._checked_count = True
        else:
            stats.prompt_tokens = local_tokens
        stats.prompt_tokens_evaluated = stats.prompt_tokens - (stats.prompt_tokens_cached or 0)
        stats.rounds = stats.requests
        stats.wall_seconds = time.perf_counter() - t0
        return completions, stats

    def _completions(
        self, replies: dict[int, _Reply], params: SamplingParams, stats: RemoteStats
    ) -> list[Completion]:
        """The N candidates in order: each reply's choices from its first index on; a reply
        without usable text gives candidates with no text ("error")."""
        out: list[Completion | None] = [None] * params.n
        for first, reply in sorted(replies.items()):
            stats.requests += 1
            if reply.prompt_tokens is not None:
                stats.prompt_tokens = max(stats.prompt_tokens, reply.prompt_tokens)
            if reply.cached_tokens is not None:
                stats.prompt_tokens_cached = max(stats.prompt_tokens_cached or 0, reply.cached_tokens)
            if not reply.usable:
                stats.bad_responses += 1
                warn(
                    f"the model server at {self.endpoint.shown} sent a response without usable text; "
                    "its candidates count as writing no SQL"
                )
                continue
            single = len(reply.choices) == 1
            for k, choice in enumerate(sorted(reply.choices, key=lambda c: _int(c.get("index")) or 0)):
                i = first + k
                if i < params.n:
                    out[i] = self._completion(choice, params, reply.completion_tokens if single else None)
        return [c if c is not None else Completion(text="", tokens=0, finish_reason="error") for c in out]

    def _completion(self, choice: dict[str, Any], params: SamplingParams, tokens: int | None) -> Completion:
        text = choice.get("text")
        if not isinstance(text, str):
            return Completion(text="", tokens=tokens or 0, finish_reason="error")
        text = self._redact(text)  # a server that echoes the key into a completion
        reason = choice.get("finish_reason")
        counted = len(self.tokenize(text)) if text else 0
        if reason != "stop":
            finish = "length" if reason == "length" else "eog"
            return Completion(text=text, tokens=counted if tokens is None else tokens, finish_reason=finish)
        # OpenAI's "stop" is a stop string or end of turn; servers leave the stop string out of
        # the text. vLLM says which (stop_reason: the string, or None for end of turn); for the
        # others a token count above the text's own tokens means a stop string was cut off.
        stop: str | None
        if "stop_reason" in choice:
            matched = choice.get("stop_reason")
            stop = matched if isinstance(matched, str) and matched in params.stop else None
        elif tokens is not None:
            stop = params.stop[0] if params.stop and tokens > counted else None
        else:
            stop = params.stop[0] if params.stop else None
        if stop is None:
            return Completion(text=text, tokens=counted if tokens is None else tokens, finish_reason="eog")
        if tokens is None:
            tokens = counted + len(self.tokenize(stop))
        return Completion(text=text + stop, tokens=tokens, finish_reason="stop")


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def check_distinct(generator: Any, merge: Any, generator_spec: str, merge_spec: str) -> None:
    """Refuse a merge model that would be answered by the generator's served model: another model
    was asked for, but the server (with no --merge-served-model) resolved to the same one."""
    if not (isinstance(generator, RemoteEngine) and isinstance(merge, RemoteEngine)) or merge is generator:
        return
    if generator.endpoint.url == merge.endpoint.url and generator.served_model == merge.served_model:
        raise UserError(
            f"the merge model {merge_spec} would be answered by {generator.served_model!r} at "
            f"{generator.endpoint.shown}, the generator {generator_spec}'s served model",
            "serve the merge model too and pass --merge-served-model NAME (or --merge-endpoint URL), "
            "or use --no-merge, or --merge-model the same as --model",
        )


if TYPE_CHECKING:  # mypy: every member of the `engine_protocol.Engine` protocol, with compatible types
    _IS_AN_ENGINE: type[engine_protocol.Engine] = RemoteEngine

"""Record what the real Anthropic SDK, traced by langsmith's `wrap_anthropic`, sends to
LangSmith when the Messages API reports cache writes split by lifetime (5-minute and 1-hour).

Writes tests/fixtures/recorded/langsmith/anthropic_cache_1h.{multipart,json,counts.json}.
Nothing leaves 127.0.0.1: the child process runs two servers on free ports, the LangSmith
capture server of `langsmith_sdk.py` (multipart ingest with zstd, as the SDK's default) and a
scripted Anthropic Messages API (`POST /v1/messages`) that answers each request with a
pre-written `message` body, whose `usage` has Anthropic's `cache_creation` object
(`ephemeral_5m_input_tokens` / `ephemeral_1h_input_tokens`) beside
`cache_creation_input_tokens`. The real `anthropic.Anthropic(base_url=..., max_retries=0)`
client, wrapped by `langsmith.wrappers.wrap_anthropic`, makes the calls; a `@traceable` chain
is the root. What `wrap_anthropic` logs (its `usage_metadata`) is the SDK's own conversion.

Re-record (needs only PyPI; never reaches a real API):

    python3 -m venv /tmp/lsa-rec && /tmp/lsa-rec/bin/pip install ".[record-langsmith-anthropic]"
    /tmp/lsa-rec/bin/python tools/record/langsmith_wrap_anthropic.py

The script stops if the requests or the counts are not what the story scripts.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import langsmith_sdk as ls  # the capture server and the multipart decoding

NAME = "anthropic_cache_1h"
MODEL = "claude-sonnet-4-5-20250929"
SDK_PACKAGES = ("langsmith", "anthropic", "httpx", "pydantic", "zstandard")
# The scripted Messages API answers, in order. Anthropic counts input_tokens without the
# cache; cache_creation_input_tokens is the sum of the cache_creation object's two lifetimes.
ANSWERS = [
    {  # 1st call: writes the contract (1 hour) and the instructions (5 minutes) to the cache
        "text": "Clause 4.2 caps liability at 12 months of fees.",
        "usage": {
            "input_tokens": 42,
            "cache_creation_input_tokens": 6200,
            "cache_read_input_tokens": 0,
            "cache_creation": {
                "ephemeral_5m_input_tokens": 1200,
                "ephemeral_1h_input_tokens": 5000,
            },
            "output_tokens": 96,
            "service_tier": "standard",
        },
    },
    {  # 2nd call: reads both back, writes nothing
        "text": "Clause 7.1 allows termination with 30 days' notice.",
        "usage": {
            "input_tokens": 37,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 6200,
            "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
            "output_tokens": 74,
            "service_tier": "standard",
        },
    },
]
STORY = (
    "A contract_qa chain asks Claude Sonnet 4.5 twice through the Anthropic SDK wrapped by "
    "wrap_anthropic: the first call writes 6200 tokens to the prompt cache (5000 for 1 hour, "
    "1200 for 5 minutes) beside 42 uncached input and 96 output tokens, the second reads the "
    "6200 back (37 uncached in, 74 out)."
)
EXPECTED = {
    "runs": 1, "steps": 3, "llm_spans": 2, "tool_spans": 0, "errors": 0,
    "input_tokens": 42 + 6200 + 37 + 6200, "output_tokens": 96 + 74,
    "cached_input_tokens": 6200, "cache_creation_tokens": 6200, "cache_write_1h_tokens": 5000,
    "models": [MODEL],
}  # fmt: skip


class MessagesServer(ls.LocalServer):
    """A scripted Anthropic Messages API: the next answer of ANSWERS for each POST."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        answers = iter(enumerate(ANSWERS))
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("content-length") or 0)))
                outer.requests.append({"path": self.path, "body": body})
                n, answer = next(answers)
                data = json.dumps({
                    "id": f"msg_{NAME}_{n:02d}", "type": "message", "role": "assistant",
                    "model": MODEL, "content": [{"type": "text", "text": answer["text"]}],
                    "stop_reason": "end_turn", "stop_sequence": None, "usage": answer["usage"],
                }).encode()  # fmt: skip
                time.sleep(ls.MODEL_SECONDS)
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("request-id", f"req_{NAME}_{n:02d}")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        super().__init__(Handler)


def child() -> int:
    with ls.CaptureServer() as server, MessagesServer() as api:
        os.environ.update({
            "LANGSMITH_ENDPOINT": server.url, "LANGSMITH_API_KEY": "lsv2-fake",
            "LANGSMITH_TRACING": "true", "LANGSMITH_PROJECT": ls.PROJECT,
        })  # fmt: skip
        import anthropic
        from langsmith import Client, traceable, tracing_context
        from langsmith.wrappers import wrap_anthropic

        client = Client()
        ls.wait_until_compressing(client)
        model = wrap_anthropic(
            anthropic.Anthropic(api_key="sk-ant-fake", base_url=api.url, max_retries=0)
        )
        system = [
            {"type": "text", "text": "Answer from the contract. Quote the clause number.",
             "cache_control": {"type": "ephemeral"}},
            {"type": "text", "text": "<contract text, 5000 tokens>",
             "cache_control": {"type": "ephemeral", "ttl": "1h"}},
        ]  # fmt: skip

        @traceable(run_type="chain", name="contract_qa")
        def contract_qa(questions: list[str]) -> dict:
            answers = []
            for question in questions:
                message = model.messages.create(
                    model=MODEL, max_tokens=1024, system=system,  # type: ignore[arg-type]
                    messages=[{"role": "user", "content": question}],
                )  # fmt: skip
                answers.append(message.content[0].text)  # type: ignore[union-attr]
            return {"answers": answers}

        with tracing_context(client=client):
            contract_qa(["What does clause 4.2 say about liability?", "How can we terminate?"])
        client.flush()
        time.sleep(0.6)
        client.flush()
        with server.lock:
            requests = list(server.requests)

    ttls = [[b.get("cache_control", {}).get("ttl") for b in r["body"]["system"]]
            for r in api.requests]  # fmt: skip
    if [r["path"] for r in api.requests] != ["/v1/messages"] * 2 or ttls != [[None, "1h"]] * 2:
        raise SystemExit(f"unexpected Messages API requests: {api.requests}")
    ingest = [r for r in requests if r.method == "POST" and r.path == "/runs/multipart"]
    other = [(r.method, r.path) for r in requests if r not in ingest]
    if other != [("GET", "/info")] or {r.header("content-encoding") for r in ingest} != {"zstd"}:
        raise SystemExit(f"unexpected LangSmith requests: {[(r.method, r.path) for r in requests]}")
    bodies = [ls.decompress(r) for r in ingest]
    parts = [p for r, body in zip(ingest, bodies, strict=True)
             for p in ls.split_multipart(body, ls.boundary_of(r.header("content-type") or ""))]  # fmt: skip
    batch = ls.to_batch_json(parts)
    ls.SDK_PACKAGES = SDK_PACKAGES
    counts = ls.count(batch, ls.sdk_versions(), STORY)
    llm = [r for r in ls.merged_runs(batch).values() if r.get("run_type") == "llm"]
    counts["cache_write_1h_tokens"] = sum(
        int((ls.usage_of(r).get("input_token_details") or {}).get("ephemeral_1h_input_tokens") or 0)
        for r in llm
    )
    counts = {k: counts[k] for k in ["sdk", *EXPECTED, "content_captured", "story", "loop"]}
    got = {k: counts[k] for k in EXPECTED}
    if got != EXPECTED:
        raise SystemExit(f"{NAME}: captured {got}, scripted {EXPECTED}")
    ls.OUT.mkdir(parents=True, exist_ok=True)
    (ls.OUT / f"{NAME}.multipart").write_bytes(b"".join(bodies))
    (ls.OUT / f"{NAME}.json").write_text(json.dumps(batch, indent=2, ensure_ascii=False) + "\n")
    (ls.OUT / f"{NAME}.counts.json").write_text(
        json.dumps(counts, indent=2, ensure_ascii=False) + "\n"
    )
    print(json.dumps(counts))
    return 0


def main() -> int:
    if sys.argv[1:2] == ["--child"]:
        return child()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("LANGSMITH_", "LANGCHAIN_", "ANTHROPIC_"))}  # fmt: skip
    with tempfile.TemporaryDirectory() as cwd:  # no git checkout: no revision_id
        done = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child"],
                              cwd=cwd, env=env, capture_output=True, text=True)  # fmt: skip
    if done.returncode != 0:
        sys.stderr.write(done.stderr)
        raise SystemExit(f"{NAME}: the child failed")
    print(f"wrote {NAME}.* to {ls.OUT.relative_to(ls.ROOT)}")
    print(done.stdout.strip().splitlines()[-1])
    return 0


if __name__ == "__main__":
    sys.exit(main())

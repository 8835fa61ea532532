"""Engine-exact tokenization: a tokenizer.json and chat template from a directory, or the engine's /tokenize."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

from picker.kvcache.tokenizer import EngineTokenizer, LocalTokenizer

TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}{{ eos_token }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
TEXT = "the quick brown fox jumps over the lazy dog; pack my box with five dozen liquor jugs. " * 40


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A byte-level BPE tokenizer trained offline, which adds <s> to plain prompts, and a chat template."""
    root = tmp_path_factory.mktemp("model")
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<s>", "</s>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tokenizer.train_from_iterator([TEXT], trainer)
    bos = tokenizer.token_to_id("<s>")
    tokenizer.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", bos)])
    tokenizer.save(str(root / "tokenizer.json"))
    config = {"bos_token": "<s>", "eos_token": {"content": "</s>"}, "chat_template": TEMPLATE}
    (root / "tokenizer_config.json").write_text(json.dumps(config))
    return root


def test_completion_prompts_get_the_special_tokens_and_chat_prompts_get_them_from_the_template(model_dir):
    local = LocalTokenizer(model_dir)
    raw = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    bos, eos = raw.token_to_id("<s>"), raw.token_to_id("</s>")
    prompt = local.tokenize({"prompt": "the lazy dog"})
    assert prompt is not None and list(prompt) == [bos, *raw.encode("the lazy dog", add_special_tokens=False).ids]
    body = {"messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "the fox"}]}
    assert local.render_chat(body) == "<s><|system|>\nbe brief</s>\n<|user|>\nthe fox</s>\n<|assistant|>\n"
    chat = local.tokenize(body)
    assert chat is not None and chat.count(bos) == 1 and chat[0] == bos and chat.count(eos) == 2
    unprompted = local.tokenize({"messages": [{"role": "user", "content": "x"}], "add_generation_prompt": False})
    assert unprompted is not None
    assert list(unprompted) == raw.encode("<s><|user|>\nx</s>\n", add_special_tokens=False).ids
    assert local.tokenize({"prompt": "the lazy dog"}) is prompt  # a repeated prompt comes from the cache


def test_requests_without_a_prompt_or_with_a_failing_template_are_not_tokenized(model_dir, tmp_path):
    assert LocalTokenizer(model_dir).tokenize({"input": "embed me"}) is None
    (tmp_path / "tokenizer.json").write_text((model_dir / "tokenizer.json").read_text())
    (tmp_path / "chat_template.jinja").write_text("{{ raise_exception('roles must alternate') }}")
    assert LocalTokenizer(tmp_path).tokenize({"messages": [{"role": "user", "content": "hi"}]}) is None
    with pytest.raises(FileNotFoundError, match=r"no tokenizer\.json in"):
        LocalTokenizer(tmp_path / "missing")


@dataclass
class TokenizeServer:
    """A real HTTP server answering /tokenize as vLLM does ({"tokens": [...]}), tokenizing with the local files;
    `seen` holds the requests it answered."""

    url: str
    seen: list[dict] = field(default_factory=list)


@pytest.fixture
def engine(model_dir) -> Iterator[TokenizeServer]:
    local = LocalTokenizer(model_dir)
    seen: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            request = json.loads(self.rfile.read(int(self.headers["content-length"])))
            seen.append(request)
            tokens = local.tokenize(request)
            ok = self.path == "/tokenize" and request.get("prompt") != "reject"
            status, answer = (200, {"tokens": list(tokens or [])}) if ok else (400, {"error": "rejected"})
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield TokenizeServer(f"http://127.0.0.1:{server.server_address[1]}", seen)
    server.shutdown()
    assert all(request["model"] == "tiny" for request in seen)


def test_the_engine_tokenize_endpoint_is_the_fallback(engine, model_dir):
    remote = EngineTokenizer(engine.url, model="tiny")
    body = {"model": "ignored", "messages": [{"role": "user", "content": "the quick fox"}]}
    tokens = remote.tokenize(body)
    assert tokens is not None and list(tokens) == list(LocalTokenizer(model_dir).tokenize(body) or ())
    assert remote.tokenize({"prompt": "reject"}) is None  # the engine answered 400
    assert remote.tokenize(body) is tokens  # a prompt already tokenized comes from the cache, engine or not
    assert remote.tokenize({"prompt": "the lazy fox"}) is None  # after a failure the engine is left alone a while
    assert EngineTokenizer("http://127.0.0.1:9", timeout=0.2).tokenize({"prompt": "x"}) is None  # nobody there

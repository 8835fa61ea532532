"""`poolgate up` on examples/vllm-tiny.yaml: the Deployment running the vllm/vllm-openai image becomes a local vLLM
process with the container's arguments, and the gateway answers through it for the model and its LoRA adapter."""

from __future__ import annotations

import openai
import pytest
import yaml

from e2e.vllm.servers import ADAPTER, MODEL
from poolgate.up import vllm
from tests.conftest import REPO
from tests.support.stacks import running_stack

pytestmark = [pytest.mark.xdist_group("vllm"), pytest.mark.timeout(900)]  # vLLM starts in 30 s to minutes


def test_the_example_runs_the_tiny_model_on_a_local_vllm(tiny_model, tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)  # the example's model paths are relative to the repository
    objects = list(yaml.safe_load_all((REPO / "examples" / "vllm-tiny.yaml").read_text()))
    for obj in objects:
        if obj["kind"] == "Gateway":
            obj["spec"]["listeners"][0]["port"] = 0
        if obj["kind"] == "Deployment":
            obj["spec"]["replicas"] = 1  # one more vLLM next to the suite's pair is enough here
    with running_stack(tmp_path, *objects) as stack:
        child = stack.child("pod/default/tiny-vllm-0")
        assert child.argv[1:3] == ["-m", vllm.API_SERVER]
        assert child.argv[child.argv.index("--model") + 1] == ".venv-vllm/tiny-model/model"
        assert f"{ADAPTER}=.venv-vllm/tiny-model/lora" in child.argv
        client = openai.OpenAI(base_url=f"{stack.url('default/inference-gateway')}/v1", api_key="unused", timeout=120)
        for model in (MODEL, ADAPTER):
            answer = client.chat.completions.create(
                model=model, messages=[{"role": "user", "content": "ka lo"}], max_tokens=3
            )
            assert answer.model == model and answer.usage.completion_tokens >= 1

"""Request checks that need only the request live in the schemas: each refused option is a
400 naming it, decided before any model is needed; and the chat template is applied by
the ctypes layer (``LlamaModel.apply_chat_template``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError
from rank1_server.app import ServerConfig, create_app
from rank1_server.backend import ChatTemplateError, LlamaModel
from rank1_server.schemas import REFUSED, ChatRequest, CompletionRequest

MESSAGES = [{"role": "user", "content": "hi"}]

REFUSALS = [
    (CompletionRequest, {"prompt": "x", "temperature": 0.7}, "temperature", "greedy"),
    (CompletionRequest, {"prompt": "x", "stream": True}, "stream", "streaming"),
    (CompletionRequest, {"prompt": "x", "stop": [""]}, "stop", "must not be empty"),
    (CompletionRequest, {"prompt": "x", "stop": ["a"] * 17}, "stop", "at most 16"),
    (CompletionRequest, {"prompt": "x", "echo": True}, "echo", "echo is not supported"),
    (CompletionRequest, {"prompt": "x", "suffix": "s"}, "suffix", "suffix is not supported"),
    (CompletionRequest, {"prompt": "x", "logprobs": 21}, "logprobs", "at most 20, got 21"),
    (CompletionRequest, {"prompt": "x", "allowed_token_ids": []}, "allowed_token_ids",
     "must not be empty"),
    (ChatRequest, {"messages": MESSAGES, "logprobs": True, "top_logprobs": 21},
     "top_logprobs", "at most 20"),
    (ChatRequest, {"messages": MESSAGES, "n": 3}, "n", "n=1"),
]


@pytest.mark.parametrize("schema,body,param,needle", REFUSALS)
def test_schema_refuses_with_param(schema, body, param, needle) -> None:
    with pytest.raises(ValidationError) as info:
        schema.model_validate(body)
    (err,) = info.value.errors()
    assert err["type"] == REFUSED and err["ctx"]["param"] == param
    assert needle in err["ctx"]["message"]


@pytest.mark.parametrize("schema,body", [
    (CompletionRequest, {"prompt": "x", "temperature": 0, "logprobs": 20, "stop": ["a"]}),
    (ChatRequest, {"messages": MESSAGES, "logprobs": False, "top_logprobs": 50}),
])
def test_servable_requests_pass(schema, body) -> None:
    assert schema.model_validate(body).refusal() is None


@pytest.mark.parametrize("schema,body,param,needle", REFUSALS)
def test_refusals_are_400_before_the_model_is_needed(schema, body, param, needle) -> None:
    app = create_app(ServerConfig(model_path="not-loaded.gguf"))  # no lifespan: never loads
    path = "/v1/completions" if schema is CompletionRequest else "/v1/chat/completions"
    r = TestClient(app).post(path, json=body)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err == {"message": err["message"], "type": "invalid_request_error",
                   "param": param, "code": None}
    assert needle in err["message"]
    # a servable request to the same app waits for the model
    ok = {"prompt": "x"} if schema is CompletionRequest else {"messages": MESSAGES}
    assert TestClient(app).post(path, json=ok).status_code == 503


def test_apply_chat_template(random_model: Path) -> None:
    model = LlamaModel.load(random_model, n_gpu_layers=0)
    try:
        text = model.apply_chat_template("chatml", [("system", "s"), ("user", "hi")])
        assert text == ("<|im_start|>system\ns<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n"
                        "<|im_start|>assistant\n")
        with pytest.raises(ChatTemplateError, match="could not be applied"):
            model.apply_chat_template("no such template", [("user", "hi")])
    finally:
        model.close()

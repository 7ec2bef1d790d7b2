#!/usr/bin/env python3
"""The official `openai` Python client against `llmkit serve` on a free loopback port: models,
greedy chat, streaming (chunks concatenate to the non-streamed text, usage in the last chunk),
completions, and errors surfacing as the client's exception types (BadRequestError,
AuthenticationError). Exit 77 (skipped) when the package or the default model is missing.

usage: test_serve_openai.py PATH/TO/llmkit"""
import sys

from serve_testlib import SKIP, default_model, serve


def main(llmkit: str) -> int:
    try:
        import openai
    except ImportError:
        print("skipped: the openai package is not installed (pip install openai)")
        return SKIP
    model = default_model()
    if model is None:
        return SKIP

    key = "sk-llmkit-test"
    with serve(llmkit, model, "-c", "512", "-P", "2", "--api-key", key) as (root, port):
        base = root + "/v1"
        client = openai.OpenAI(base_url=base, api_key=key, max_retries=0, timeout=120)

        models = client.models.list()
        name = models.data[0].id
        assert name == "SmolLM2-135M-Instruct-Q4_1", name

        msgs = [{"role": "system", "content": "You answer in one sentence."},
                {"role": "user", "content": "Name a colour."}]
        full = client.chat.completions.create(model=name, messages=msgs, temperature=0, max_tokens=24)
        text = full.choices[0].message.content
        assert text, "empty reply"
        assert full.choices[0].finish_reason in ("stop", "length")
        assert full.usage.total_tokens == full.usage.prompt_tokens + full.usage.completion_tokens

        stream = client.chat.completions.create(model=name, messages=msgs, temperature=0, max_tokens=24, stream=True,
                                                stream_options={"include_usage": True})
        pieces, usage, finish = [], None, None
        for chunk in stream:
            if chunk.usage:
                usage = chunk.usage
            for c in chunk.choices:
                if c.delta.content:
                    pieces.append(c.delta.content)
                if c.finish_reason:
                    finish = c.finish_reason
        assert "".join(pieces) == text, (pieces, text)
        assert finish == full.choices[0].finish_reason
        assert usage is not None and usage.completion_tokens == full.usage.completion_tokens

        # n choices and logprobs, typed by the client's own models.
        lp = client.chat.completions.create(model=name, messages=msgs, temperature=0, max_tokens=6, n=2,
                                            logprobs=True, top_logprobs=2)
        assert len(lp.choices) == 2 and lp.choices[1].index == 1
        content = lp.choices[0].logprobs.content
        assert "".join(t.token for t in content) == lp.choices[0].message.content, content
        assert all(len(t.top_logprobs) == 2 and t.logprob <= 0 and t.logprob == t.top_logprobs[0].logprob for t in content)
        assert lp.usage.completion_tokens == 2 * len(content)
        clp = client.completions.create(model=name, prompt="1, 2, 3,", temperature=0, max_tokens=4, logprobs=2)
        assert "".join(clp.choices[0].logprobs.tokens) == clp.choices[0].text

        cmpl = client.completions.create(model=name, prompt="1, 2, 3, 4,", temperature=0, max_tokens=8, stop=["7"])
        assert cmpl.choices[0].text and "7" not in cmpl.choices[0].text, cmpl.choices[0].text

        # Embeddings through the client (it asks for base64 and decodes it): unit vectors of d_model.
        emb = client.embeddings.create(model=name, input=["hello world", "hello world", "another text"])
        vecs = [d.embedding for d in emb.data]
        assert len(vecs) == 3 and all(len(v) == 576 for v in vecs), [len(v) for v in vecs]
        assert abs(sum(x * x for x in vecs[0]) - 1.0) < 1e-4
        assert vecs[0] == vecs[1] and vecs[0] != vecs[2]
        assert emb.usage.prompt_tokens > 0
        try:
            client.embeddings.create(model=name, input="")
            raise AssertionError("empty input accepted")
        except openai.BadRequestError as e:
            assert e.body.get("param") == "input", e.body

        for bad in ({"n": 17}, {"max_tokens": 100000}, {"temperature": 5}):
            try:
                client.chat.completions.create(model=name, messages=msgs, **bad)
                raise AssertionError(f"{bad} was accepted")
            except openai.BadRequestError as e:
                assert e.status_code == 400
                assert e.body and e.body.get("param") == next(iter(bad)), e.body
        try:
            client.chat.completions.create(model="gpt-4o", messages=msgs)
            raise AssertionError("unknown model accepted")
        except openai.BadRequestError as e:
            assert e.body.get("param") == "model", e.body

        wrong = openai.OpenAI(base_url=base, api_key="sk-wrong", max_retries=0)
        try:
            wrong.models.list()
            raise AssertionError("wrong key accepted")
        except openai.AuthenticationError as e:
            assert e.status_code == 401
        print(f"ok: openai {openai.__version__} against llmkit serve on port {port}: {text!r}")
        return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "build/bin/llmkit"))

#!/usr/bin/env python3
"""Generates the chat-template parity fixtures in testdata/templates/ (developer-only).

Each template in testdata/templates/src/*.jinja (written down from the models' tokenizer_config.json
chat_template, or GGUF tokenizer.chat_template for SmolLM2) is rendered by transformers' own
rendering function, transformers.utils.chat_template_utils.render_jinja_template, on a set of
conversations (with and without a system prompt, with and without add_generation_prompt, Chinese
and emoji, tools where the template has a tools branch). The outputs -- or the error message when
the template raises -- are stored as JSON next to the template and conversation, and
tests/test_chat_template.cc compares llmkit's rendering with them byte for byte.

strftime_now is pinned to NOW (UTC) so that date-dependent templates are reproducible; the C++ test
passes the same instant. Needs: pip install transformers jinja2 (no network, no model downloads).

    python3 tools/gen_template_fixtures.py
"""
import datetime
import json
import pathlib
import sys

import jinja2
import transformers
from transformers.utils import chat_template_utils as ctu

ROOT = pathlib.Path(__file__).resolve().parent.parent
SRC = ROOT / "testdata" / "templates" / "src"
OUT = ROOT / "testdata" / "templates"
NOW = datetime.datetime(2026, 7, 26, 12, 30, 0)  # naive, as datetime.now() returns
NOW_EPOCH = int(NOW.replace(tzinfo=datetime.timezone.utc).timestamp())


class _FixedDatetime(datetime.datetime):
    @classmethod
    def now(cls, tz=None):  # noqa: D401 - mirrors datetime.now
        return NOW


ctu.datetime = _FixedDatetime  # transformers' strftime_now calls datetime.now()

SYSTEM = {"role": "system", "content": "You are a concise assistant."}
U1 = {"role": "user", "content": "Hello! How are you?"}
A1 = {"role": "assistant", "content": "I'm fine, thanks. How can I help?"}
U2 = {"role": "user", "content": "Write a haiku about the sea."}

CONVERSATIONS = {
    "single_user": [U1],
    "multi_turn": [U1, A1, U2],
    "system_multi_turn": [SYSTEM, U1, A1, U2],
    "chinese_emoji": [
        {"role": "system", "content": "你是一个乐于助人的助手。🤖"},
        {"role": "user", "content": "你好！今天天气怎么样？🌞"},
        {"role": "assistant", "content": "今天阳光明媚 ☀️，适合出门。"},
        {"role": "user", "content": "谢谢 🙏 Ünïcödé \"quotes\" and \\ backslash\ttab"},
    ],
    "whitespace": [
        {"role": "user", "content": "  padded with spaces and newlines \n\n"},
        {"role": "assistant", "content": "\n  answer  \n"},
        {"role": "user", "content": "{{ not a template }} {% neither %}"},
    ],
}

PARTS = [
    {"role": "user", "content": [{"type": "text", "text": "Describe"}, {"type": "image"}, {"type": "text", "text": "this picture 🖼️"}]},
    {"role": "assistant", "content": [{"type": "text", "text": "A cat on a mat."}]},
    {"role": "user", "content": "And now plain text."},
]

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "City name, e.g. 北京"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city"],
        },
    },
}
COMPLEX_TOOL = {
    "type": "function",
    "function": {
        "name": "search",
        "description": "  Search documents  ",
        "parameters": {
            "type": "object",
            "properties": {
                "query": {"type": "string", "description": "What to find"},
                "limit": {"type": "integer"},
                "tags": {"type": "array", "items": {"type": "string"}},
                "filters": {"type": "object", "additionalProperties": {"type": ["string", "number"]}},
                "score": {"type": "number", "description": "min score"},
                "exact": {"type": "boolean"},
            },
            "required": ["query"],
        },
        "return": {"type": "array", "description": "matching ids"},
    },
}
TOOL_CALL_DICT = {"role": "assistant", "content": "", "tool_calls": [
    {"id": "call12345", "type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}}]}
TOOL_RESULT = {"role": "tool", "tool_call_id": "call12345", "content": "{\"temperature\": 22, \"sky\": \"clear\"}"}
TOOL_CALL_STR = {"role": "assistant", "content": None, "tool_calls": [
    {"id": "call12345", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]}

TEMPLATES = {
    # name: (bos, eos, extra cases: list of (case name, messages, extra vars))
    "smollm2": ("<|im_start|>", "<|im_end|>", []),
    "llama2": ("<s>", "</s>", []),
    "llama3": ("<|begin_of_text|>", "<|eot_id|>", []),
    "llama3_1": ("<|begin_of_text|>", "<|eot_id|>", [
        ("tools_in_user_message", [SYSTEM, {"role": "user", "content": "Weather in Paris?"}, TOOL_CALL_DICT,
                                   {"role": "tool", "content": {"temperature": 22}}], {"tools": [WEATHER_TOOL]}),
        ("tools_in_system", [{"role": "user", "content": "Weather in Paris?"}],
         {"tools": [WEATHER_TOOL], "tools_in_user_message": False, "date_string": "01 Jan 2025"}),
        ("builtin_tools", [{"role": "user", "content": "Search it"},
                           {"role": "assistant", "tool_calls": [{"type": "function", "function": {"name": "brave_search", "arguments": {"query": "llmkit"}}}]}],
         {"builtin_tools": ["brave_search", "code_interpreter"]}),
    ]),
    "llama3_2": ("<|begin_of_text|>", "<|eot_id|>", []),
    "qwen2": ("", "<|im_end|>", []),
    "qwen2_5": ("", "<|im_end|>", [
        ("tools", [SYSTEM, {"role": "user", "content": "Weather in Paris?"}, TOOL_CALL_DICT, TOOL_RESULT, TOOL_RESULT,
                   {"role": "assistant", "content": "It is 22°C and clear."}], {"tools": [WEATHER_TOOL]}),
        ("tools_no_system", [{"role": "user", "content": "Weather?"}], {"tools": [WEATHER_TOOL]}),
    ]),
    "qwen2_vl": ("", "<|im_end|>", [
        ("content_parts", PARTS, {}),
        ("content_parts_vision_id", PARTS, {"add_vision_id": True}),
    ]),
    "mistral_v0_1": ("<s>", "</s>", [
        ("bad_alternation", [U1, U2], {}),
    ]),
    "mistral_v0_3": ("<s>", "</s>", [
        ("tools", [{"role": "user", "content": "Weather in Paris?"}, TOOL_CALL_DICT, TOOL_RESULT,
                   {"role": "assistant", "content": "22 degrees."}, {"role": "user", "content": "Thanks"}],
         {"tools": [WEATHER_TOOL]}),
        ("bad_tool_id", [{"role": "user", "content": "x"},
                         {"role": "assistant", "tool_calls": [{"id": "short", "function": {"name": "f", "arguments": {}}}]}], {}),
    ]),
    "gemma": ("<bos>", "<eos>", []),
    "phi3": ("<s>", "<|endoftext|>", []),
    "chatglm4": ("[gMASK]", "<|endoftext|>", [
        ("tools", [{"role": "system", "content": "", "tools": [WEATHER_TOOL, {"type": "python"}]},
                   {"role": "user", "content": "Weather in Paris?"}], {}),
        ("metadata", [{"role": "user", "content": "hi", "metadata": "meta"}], {}),
    ]),
    "deepseek_v2": ("<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", []),
    "deepseek_r1": ("<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", [
        ("think", [U1, {"role": "assistant", "content": "<think>\nreasoning\n</think>\n\nAnswer."}, U2], {}),
        ("tools", [U1, TOOL_CALL_STR, {"role": "tool", "content": "22C"}, {"role": "tool", "content": "clear"},
                   {"role": "assistant", "content": "Nice weather."}], {}),
    ]),
    "whitespace_edge": ("<s>", "</s>", []),
    "scoping": ("<s>", "</s>", []),
    "hermes_tools": ("<|begin_of_text|>", "<|im_end|>", [
        ("tools", [SYSTEM, {"role": "user", "content": "Weather in Paris?"}, TOOL_CALL_DICT, TOOL_RESULT, TOOL_RESULT,
                   {"role": "assistant", "content": "22C."}], {"tools": [WEATHER_TOOL, COMPLEX_TOOL]}),
        # The real Hermes template recurses forever on a "null" type (it iterates the string's
        # characters); jinja2 raises RecursionError, llmkit its recursion depth cap.
        ("null_type_recursion", [{"role": "user", "content": "x"}],
         {"tools": [{"type": "function", "function": {"name": "f", "description": "d", "parameters": {
             "type": "object", "properties": {"a": {"type": ["string", "null"]}}}}}]}),
    ]),
    "kitchen_sink": ("<s>", "</s>", [
        ("content_parts", PARTS, {}),
        ("empty", [], {}),
    ]),
}

KEEP_TRAILING_NEWLINE = {"kitchen_sink", "whitespace_edge"}  # its source ends with a newline, which jinja2 drops


def render(template, bos, eos, messages, agp, extra):
    extra = dict(extra)
    tools = extra.pop("tools", None)
    rendered, _ = ctu.render_jinja_template(
        conversations=[messages], tools=tools, chat_template=template, add_generation_prompt=agp,
        bos_token=bos, eos_token=eos, **extra)
    return rendered[0]


# One-line templates for semantics the model templates above do not reach; rendered with
# messages=[U1] and stored in snippets.json (expected output, or the error jinja2 raises).
SNIPPETS = [
    "{{ 'a' ~ 1 ~ 2.0 ~ none ~ true }}", "{{ 7 / 7 }} {{ 2 ** 62 }} {{ -3 // 2 }} {{ -3 % -2 }} {{ 3.5 // 2 }} {{ -7.5 % 2 }}",
    "{{ 1 / 0 }}", "{{ 'x' + 1 }}", "{{ [1] + [2, 3] }} {{ [0] * 3 }} {{ 'ab' * 2 }} {{ 2 * 'c' }}",
    "{{ 1 < 'a' }}", "{{ none == none }} {{ none == false }} {{ 0 == false }} {{ 1 == true }} {{ '1' == 1 }}",
    "{{ [1, 2] < [1, 3] }} {{ 'B' < 'a' }} {{ 2 > 1.5 }}", "{{ {'a': 1} == {'a': 1} }} {{ [1, [2]] == [1, [2]] }}",
    "{{ 'é' | length }} {{ '日本語'[1:] }} {{ '日本語'[-1] }} {{ 'abc'[10] }}|{{ [1, 2][5] }}|",
    "{{ 'a b'.split(' ') }} {{ ' x '.strip() }}{{ 'xxhixx'.strip('x') }} {{ 'a'.upper() }}", "{{ 'Hello World'.replace('o', '0') }}",
    "{{ '{0}-{1}-{0}'.format('a', 'b') }} {{ '{x}!'.format(x=5) }} {{ '{{}}'.format() }}",
    "{{ 'abc'.startswith('a') }} {{ 'abc'.endswith('bc') }} {{ 'abc'.startswith(('x', 'a')) }}",
    "{{ [3, 1, 2] | sort }} {{ [3, 1, 2] | sort(reverse=true) }} {{ ['b', 'A', 'c'] | sort }} {{ ['b', 'A'] | sort(case_sensitive=true) }}",
    "{{ ['a', 'A', 'b'] | unique | list }} {{ [{'n': 2}, {'n': 1}] | sort(attribute='n') | map(attribute='n') | list }}",
    "{{ 'hello world' | title }} {{ 'x' | center if false else 'no-center' }}", "{{ [1, 2, 3] | join('-') }} {{ [1, 2] | first }}{{ [1, 2] | last }}",
    "{{ none | default('d') }} {{ '' | default('d') }} {{ false | default('d', true) }} {{ undefined_var | d }}",
    "{{ 3.0 | int }} {{ '0x1f' | int(0, 16) }} {{ '12abc' | int }} {{ ' 7 ' | int }} {{ '1e3' | float }} {{ 'nan' | float }}",
    "{{ 1.0 }} {{ 1.5e300 * 1e10 }} {{ 100000000000000000.0 }} {{ 0.0001 }} {{ 123456789.123 }} {{ -0.0 }}",
    "{{ 2.675 | round(2) }} {{ 0.5 | round }} {{ 1.5 | round }} {{ -2.5 | round }} {{ 7 | round }} {{ 2.4 | round(0, 'ceil') }}",
    "{{ {'a': [1, 2], 'b': 'é\n\t\u0001'} | tojson }} {{ [] | tojson(indent=2) }} {{ 1.0 | tojson }} {{ 'x' | tojson(indent=2) }}",
    "{{ {'a': {'b': [1, {}]}} | tojson(indent=2) }}", "{{ {'a': 1, 'b': 2} | tojson(separators=(',', ':')) }}",
    "{{ x is defined }} {{ x is not defined }} {{ messages is sequence }} {{ messages[0] is mapping }} {{ 'a' is iterable }} {{ 5 is iterable }}",
    "{{ 1.0 is integer }} {{ true is number }} {{ none is string }} {{ 'Ab' is upper }} {{ 'AB' is upper }}",
    "{% set d = {'k': 'v'} %}{{ d.k }} {{ d['k'] }} {{ d.items() | list | length }} {{ d.missing }}|{{ d['missing'] }}|",
    "{% for a, b in [[1, 2], [3, 4]] %}{{ a + b }}{% endfor %} {% for c in 'hé' %}[{{ c }}]{% endfor %} {% for k in {'x': 1, 'y': 2} %}{{ k }}{% endfor %}",
    "{% for i in range(3) %}{{ loop.index }}{{ loop.revindex }}{{ loop.first }}{{ loop.last }}{% endfor %}",
    "{% for i in [] %}x{% else %}empty{% endfor %} {% for i in none %}{% endfor %}",
    "{% set x %}  captured {{ 1 }}  {% endset %}[{{ x }}] {% set y | upper %}up{% endset %}{{ y }}",
    "{% macro m(a, b=2) %}{{ a }}{{ b }}{{ c }}{% endmacro %}{{ m(1) }}{{ m(1, 3) }}{{ m(b=4, a=5) }}",
    "{% macro m(a) %}{{ a }}{% endmacro %}{{ m(1, 2) }}", "{% macro list_it(xs) %}{% for x in xs %}<{{ caller(x) }}>{% endfor %}{% endmacro %}{% call(v) list_it([1, 2]) %}v={{ v }}{% endcall %}",
    "{{ 'yes' if 1 else 'no' }} {{ 'yes' if 0 }}|{{ (1 if true else 2) + 1 }}", "{{ not 1 == 2 }} {{ not (1 and 0) }} {{ 1 and 2 }} {{ 0 or '' or 'z' }}",
    "{{ 'ab' in 'cabd' }} {{ 1 in [1.0] }} {{ 'a' not in {'a': 1} }} {{ none in [none] }}", "{{ 1 in 'abc' }}",
    "{{ raise_exception('custom ' ~ 42) }}", "{{ messages[0].content.upper() }} {{ messages[0]['role'] | upper }}",
    "{{ messages | selectattr('role', 'equalto', 'user') | list | length }} {{ messages | map(attribute='role') | join }}",
    "{{ [1, 2, 3, 4] | select('even') | list }} {{ [1, 2, 3] | reject('odd') | list }} {{ [1, 2, 3] | select('gt', 1) | list }}",
    "{{ 'a\nb\n' | indent(2) }}|{{ 'a\n\nb' | indent(2, true, true) }}", "{{ 'x,y' | replace(',', '') | list }} {{ 'hi' | list | reverse | join }}",
    "{{ dict(a=1, b=2) | tojson }} {{ namespace(a=1).a }}", "{% set ns = namespace(a=1) %}{% set ns.b = ns.a + 1 %}{{ ns.a }}{{ ns.b }}",
    "{{ range(2, 8, 2) | list }} {{ range(0) | list }} {{ range(3, 0, -1) | list }}", "{{ range(100001) | length }}",
    "{{ 1 if x is none else 2 }} {{ 'a' 'b' }} {{ \"double\" }} {{ 'it\\'s' }}",
    "{{ [1, 2, 3][1:] }} {{ [1, 2, 3][:-1] }} {{ [1, 2, 3][::2] }} {{ 'abcdef'[-3:] }} {{ 'abcdef'[::-2] }} {{ [1, 2][5:] }}",
    "{{ messages[0].content[:5] ~ '…' }}", "{{ 5 | abs }} {{ -5.5 | abs }} {{ [1, 2, 3] | sum }} {{ [3, 9] | max }} {{ 'abc' | length }}",
    "{{ 'a  b' | wordcount }} {{ 'Hello' | lower }} {{ 'hELLo wORLD' | capitalize }} {{ ' x ' | trim }}|",
    "{{ [1, 2, 3, 4, 5] | batch(2) | list }} {{ {'b': 1, 'a': 2} | items | list | length }}",
    "{{ strftime_now('%Y-%m-%d %A %B %j') }}", "{% for i in range(5) %}{% if i == 3 %}{% break %}{% endif %}{{ i }}{% endfor %}",
    "{{ '%s' }} {{ '{' }} {{ '}}' }}", "{#- comment -#}  {{- 'x' -}}  {#- c2 #}  y",
]


def render_snippets(bos, eos):
    out = []
    for tpl in SNIPPETS:
        case = {"template": tpl}
        try:
            case["expected"] = render(tpl, bos, eos, [U1], False, {})
        except Exception as e:
            case["error"] = str(e)
            case["error_type"] = type(e).__name__
        out.append(case)
    return out


def main():
    print(f"transformers {transformers.__version__}, jinja2 {jinja2.__version__}")
    for name, (bos, eos, extra_cases) in TEMPLATES.items():
        template = (SRC / f"{name}.jinja").read_text(encoding="utf-8")
        if name not in KEEP_TRAILING_NEWLINE and template.endswith("\n"):
            template = template[:-1]
        cases = []
        all_convs = [(k, v, {}) for k, v in CONVERSATIONS.items()] + list(extra_cases)
        for case_name, messages, extra in all_convs:
            for agp in (False, True):
                case = {"name": f"{case_name}/{'gen' if agp else 'nogen'}", "messages": messages,
                        "add_generation_prompt": agp, "extra": extra}
                try:
                    case["expected"] = render(template, bos, eos, messages, agp, extra)
                except Exception as e:  # the template raised (raise_exception) or failed
                    case["error"] = str(e)
                    case["error_type"] = type(e).__name__
                cases.append(case)
        out = {"name": name, "template": template, "bos_token": bos, "eos_token": eos, "now": NOW_EPOCH,
               "generator": f"transformers {transformers.__version__} render_jinja_template, jinja2 {jinja2.__version__}",
               "cases": cases}
        path = OUT / f"{name}.json"
        path.write_text(json.dumps(out, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
        n_err = sum("error" in c for c in cases)
        print(f"{name}: {len(cases)} cases ({n_err} raise) -> {path.relative_to(ROOT)}")
        for c in cases:
            if "error" in c:
                print(f"   {c['name']}: {c['error_type']}: {c['error'][:100]}")
    snippets = {"now": NOW_EPOCH, "bos_token": "<s>", "eos_token": "</s>", "messages": [U1],
                "generator": f"transformers {transformers.__version__} render_jinja_template, jinja2 {jinja2.__version__}",
                "snippets": render_snippets("<s>", "</s>")}
    (OUT / "snippets.json").write_text(json.dumps(snippets, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(f"snippets: {len(SNIPPETS)} ({sum('error' in c for c in snippets['snippets'])} raise)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

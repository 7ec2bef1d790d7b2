// Chat templates: byte-for-byte parity with transformers' apply_chat_template on the committed
// fixtures (tools/gen_template_fixtures.py), the sandbox caps (recursion depth, steps, output
// size, list size, range), raise_exception, syntax errors with line numbers, undefined-value
// semantics, and the request-template policy.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include <nlohmann/json.hpp>

#include "llmkit/chat_template.h"
#include "llmkit/error.h"
#include "llmkit/tokenizer/chat_template.h"

namespace llmkit::tokenizer {
namespace {

using json = nlohmann::ordered_json;

json one_user(const std::string& text = "hi") { return json::array({{{"role", "user"}, {"content", text}}}); }

std::string render(const std::string& tpl, const json& messages = one_user(), bool gen = false,
                   ChatTemplateOptions opts = {}, const json& extra = json::object()) {
  ChatTemplate t(tpl, "<s>", "</s>", opts);
  return t.render(messages, gen, extra);
}

// Renders and returns the llmkit::Error message; fails the test when nothing is thrown.
std::string render_error(const std::string& tpl, ChatTemplateOptions opts = {}, ErrorCode want = ErrorCode::kInvalidArgument) {
  try {
    render(tpl, one_user(), false, opts);
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), want) << e.what();
    return e.what();
  }
  ADD_FAILURE() << "expected an llmkit::Error for template: " << tpl.substr(0, 200);
  return "";
}

// ---- parity with transformers ----------------------------------------------------------------

TEST(ChatTemplate, ParityWithTransformersFixtures) {
  std::filesystem::path dir = std::filesystem::path(LLMKIT_TESTDATA_DIR) / "templates";
  int n_templates = 0, n_cases = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    if (entry.path().extension() != ".json") continue;
    std::ifstream f(entry.path());
    json fx = json::parse(f);
    if (!fx.contains("cases")) continue;  // snippets.json has its own test
    ++n_templates;
    ChatTemplateOptions opts;
    opts.now = fx["now"].get<std::time_t>();
    std::string name = fx["name"].get<std::string>();
    ChatTemplate t(fx["template"].get<std::string>(), fx["bos_token"].get<std::string>(),
                   fx["eos_token"].get<std::string>(), opts);
    for (const json& c : fx["cases"]) {
      ++n_cases;
      std::string label = name + ":" + c["name"].get<std::string>();
      if (c.contains("expected")) {
        try {
          std::string got = t.render(c["messages"], c["add_generation_prompt"].get<bool>(), c["extra"]);
          EXPECT_EQ(got, c["expected"].get<std::string>()) << label;
        } catch (const Error& e) {
          ADD_FAILURE() << label << ": unexpected error: " << e.what();
        }
      } else {
        try {
          t.render(c["messages"], c["add_generation_prompt"].get<bool>(), c["extra"]);
          ADD_FAILURE() << label << ": expected an error like transformers' " << c["error"];
        } catch (const Error& e) {
          EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument) << label;
          if (c["error_type"] == "TemplateError") {  // raise_exception: the template's message verbatim
            EXPECT_EQ(std::string(e.what()), c["error"].get<std::string>()) << label;
          }
        }
      }
    }
  }
  EXPECT_GE(n_templates, 17);
  EXPECT_GE(n_cases, 150);
}

TEST(ChatTemplate, ParityWithTransformersOnSnippets) {
  // One-line templates for operators, filters, tests, methods and printing rules.
  std::ifstream f(std::filesystem::path(LLMKIT_TESTDATA_DIR) / "templates" / "snippets.json");
  json fx = json::parse(f);
  ChatTemplateOptions opts;
  opts.now = fx["now"].get<std::time_t>();
  int n = 0;
  for (const json& c : fx["snippets"]) {
    ++n;
    const std::string tpl = c["template"].get<std::string>();
    try {
      ChatTemplate t(tpl, fx["bos_token"].get<std::string>(), fx["eos_token"].get<std::string>(), opts);
      std::string got = t.render(fx["messages"], false);
      if (c.contains("expected")) EXPECT_EQ(got, c["expected"].get<std::string>()) << tpl;
      else ADD_FAILURE() << tpl << ": expected an error like transformers' " << c["error"];
    } catch (const Error& e) {
      if (c.contains("expected")) {
        ADD_FAILURE() << tpl << ": unexpected error: " << e.what();
      } else if (c["error_type"] == "TemplateError") {
        EXPECT_EQ(std::string(e.what()), c["error"].get<std::string>()) << tpl;
      }
    }
  }
  EXPECT_GE(n, 50);
}

TEST(ChatTemplate, SmolLM2DefaultModelTemplate) {
  // The template inside the default model (SmolLM2-135M-Instruct GGUF), spot-checked by hand.
  const std::string tpl =
      "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ "
      "'<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' "
      "}}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + "
      "'\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";
  EXPECT_EQ(render(tpl, one_user("Hi"), true),
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
            "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
  EXPECT_EQ(llmkit::render_chat_template(tpl, {{"system", "S"}, {"user", "U"}}, false),
            "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU<|im_end|>\n");
}

TEST(ChatTemplate, LongConversationFitsTheDefaultCaps) {
  // 4000 turns with tool calls through Qwen2.5's template: far beyond real prompts, well within
  // the default step / output caps.
  std::ifstream f(std::filesystem::path(LLMKIT_TESTDATA_DIR) / "templates" / "qwen2_5.json");
  json fx = json::parse(f);
  json msgs = json::array();
  for (int i = 0; i < 1000; ++i) {
    msgs.push_back({{"role", "user"}, {"content", "question " + std::to_string(i)}});
    msgs.push_back({{"role", "assistant"}, {"content", ""}, {"tool_calls", json::array({{{"type", "function"},
        {"function", {{"name", "f"}, {"arguments", {{"i", i}}}}}}})}});
    msgs.push_back({{"role", "tool"}, {"content", "result"}});
    msgs.push_back({{"role", "assistant"}, {"content", "answer " + std::to_string(i)}});
  }
  ChatTemplate t(fx["template"].get<std::string>(), "", "<|im_end|>");
  std::string out = t.render(msgs, true, json{{"tools", json::array({{{"type", "function"}, {"function", {{"name", "f"}}}}})}});
  EXPECT_NE(out.find("answer 999<|im_end|>\n<|im_start|>assistant\n"), std::string::npos);
}

// ---- language details not covered by the fixtures ---------------------------------------------

TEST(ChatTemplate, UndefinedBehavesLikeJinja2Default) {
  EXPECT_EQ(render("[{{ missing }}]{{ missing is defined }}{{ missing | length }}{% for x in missing %}x{% endfor %}"),
            "[]False0");
  EXPECT_EQ(render("{{ messages[0].nope }}|{{ messages[5] }}|{{ none.attr }}|{{ 'abc'.nope }}"), "|||");
  EXPECT_EQ(render("{{ missing ~ 'x' }}{{ 'y' if missing else 'n' }}"), "xn");
  EXPECT_NE(render_error("{{ missing.attr }}").find("'missing' is undefined"), std::string::npos);
  EXPECT_NE(render_error("{{ missing + 1 }}").find("undefined"), std::string::npos);
  EXPECT_NE(render_error("{{ messages[0].nope.deeper }}").find("undefined"), std::string::npos);
  EXPECT_NE(render_error("{{ missing() }}").find("undefined"), std::string::npos);
}

TEST(ChatTemplate, ListAppendAndMethods) {
  EXPECT_EQ(render("{% set xs = [] %}{% for m in messages %}{% set _ = xs.append(m.role) %}{% endfor %}{{ xs }}"),
            "['user']");
  EXPECT_EQ(render("{{ {'a': 1}.get('a') }}{{ 'a-b'.split('-') | join('+') }}{{ ', '.join(['x', 'y']) }}"), "1a+bx, y");
}

TEST(ChatTemplate, StrftimeNowUsesTheConfiguredClock) {
  ChatTemplateOptions opts;
  opts.now = 1785069000;  // 2026-07-26 12:30:00 UTC
  EXPECT_EQ(render("{{ strftime_now('%d %b %Y %H:%M') }}", one_user(), false, opts), "26 Jul 2026 12:30");
}

TEST(ChatTemplate, ContentPartsAndExtraVariables) {
  json msgs = json::array({{{"role", "user"}, {"content", json::array({{{"type", "text"}, {"text", "a"}},
                                                                         {{"type", "text"}, {"text", "b"}}})}}});
  EXPECT_EQ(render("{% for p in messages[0].content %}{{ p.text }}{% endfor %}{{ flag }}{{ tools }}", msgs, false, {},
                   json{{"flag", true}}),
            "abTrueNone");
}

TEST(ChatTemplate, RaiseExceptionIsATypedErrorWithTheTemplatesMessage) {
  try {
    render("{{ raise_exception('System role not supported') }}");
    FAIL() << "expected raise_exception to throw";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
    EXPECT_STREQ(e.what(), "System role not supported");
    EXPECT_NE(e.hint().find("raise_exception"), std::string::npos);
  }
}

// ---- syntax errors ---------------------------------------------------------------------------

TEST(ChatTemplate, SyntaxErrorsNameTheLine) {
  EXPECT_NE(render_error("line one\nline two\n{{ 1 + }}").find("line 3"), std::string::npos);
  EXPECT_NE(render_error("{% if true %}\nno end").find("endif"), std::string::npos);
  EXPECT_NE(render_error("a\n{% endfor %}").find("line 2"), std::string::npos);
  EXPECT_NE(render_error("{{ 'unterminated }}").find("unterminated string"), std::string::npos);
  EXPECT_NE(render_error("x\n\n{# never closed").find("line 3"), std::string::npos);
  EXPECT_NE(render_error("{{ x").find("unclosed"), std::string::npos);
  EXPECT_NE(render_error("{% for in x %}{% endfor %}").find("line 1"), std::string::npos);
  EXPECT_NE(render_error("{{ a b }}").find("expected '}}'"), std::string::npos);
  EXPECT_NE(render_error("{{ 99999999999999999999 }}").find("64 bits"), std::string::npos);
  EXPECT_NE(render_error("{{ 1 | nosuchfilter }}").find("unknown filter"), std::string::npos);
  render_error("{% include 'x.html' %}", {}, ErrorCode::kUnsupported);
}

// ---- sandbox caps (RELIABILITY: recursion, huge loops, huge strings, host objects) -------------

TEST(ChatTemplateSandbox, MacroRecursionHitsTheDepthCap) {
  std::string msg = render_error("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}");
  EXPECT_NE(msg.find("max_depth"), std::string::npos) << msg;
  msg = render_error("{% macro a() %}{{ b() }}{% endmacro %}{% macro b() %}{{ a() }}{% endmacro %}{{ a() }}");
  EXPECT_NE(msg.find("max_depth"), std::string::npos) << msg;
}

TEST(ChatTemplateSandbox, DeepNestingIsAnErrorNotAStackOverflow) {
  EXPECT_NE(render_error("{{ " + std::string(100000, '(') + "1" + std::string(100000, ')') + " }}").find("max_depth"),
            std::string::npos);
  std::string ifs;
  for (int i = 0; i < 20000; ++i) ifs += "{% if true %}";
  EXPECT_NE(render_error(ifs).find("max_depth"), std::string::npos);
  EXPECT_NE(render_error("{{ " + std::string(100000, '-') + "1 }}").find("max_depth"), std::string::npos);
  EXPECT_NE(render_error("{{ " + std::string(50000, '[') + std::string(50000, ']') + " }}").find("max_depth"),
            std::string::npos);
  EXPECT_NE(render_error("{{ x" + std::string(50000, '[') + " }}").find("unclosed"), std::string::npos);
}

TEST(ChatTemplateSandbox, HugeLoopsHitTheRangeOrStepCap) {
  std::string msg = render_error("{% for i in range(10**9) %}x{% endfor %}");
  EXPECT_NE(msg.find("range"), std::string::npos) << msg;
  msg = render_error("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}");
  EXPECT_NE(msg.find("max_steps"), std::string::npos) << msg;
  ChatTemplateOptions small;
  small.limits.max_steps = 1000;
  msg = render_error("{% for i in range(5000) %}{{ i }}{% endfor %}", small);
  EXPECT_NE(msg.find("max_steps=1000"), std::string::npos) << msg;
}

TEST(ChatTemplateSandbox, HugeStringsHitTheOutputCap) {
  std::string msg = render_error("{{ 'a' * 10**9 }}");
  EXPECT_NE(msg.find("max_output_bytes"), std::string::npos) << msg;
  msg = render_error("{% set ns = namespace(s='ab') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}");
  EXPECT_NE(msg.find("max_output_bytes"), std::string::npos) << msg;
  msg = render_error("{% set ns = namespace(s='ab') %}{% for i in range(64) %}{% set ns.s = ns.s + ns.s %}{% endfor %}");
  EXPECT_NE(msg.find("max_output_bytes"), std::string::npos) << msg;
  msg = render_error("{% for i in range(100000) %}{{ 'x' * 1000 }}{% endfor %}");
  EXPECT_NE(msg.find("max_output_bytes"), std::string::npos) << msg;
  msg = render_error("{{ ('a' * 1000000) | replace('a', 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa') }}");
  EXPECT_NE(msg.find("max_output_bytes"), std::string::npos) << msg;
  ChatTemplateOptions small;
  small.limits.max_output_bytes = 10;
  msg = render_error("{{ 'hello world, this is long' }}", small);
  EXPECT_NE(msg.find("max_output_bytes=10"), std::string::npos) << msg;
}

TEST(ChatTemplateSandbox, HugeListsHitTheListCap) {
  std::string msg =
      render_error("{% set ns = namespace(l=[1]) %}{% for i in range(64) %}{% set ns.l = ns.l + ns.l %}{% endfor %}");
  EXPECT_NE(msg.find("max_list_items"), std::string::npos) << msg;
  msg = render_error("{{ ([1] * 10**9) | length }}");
  EXPECT_NE(msg.find("max_list_items"), std::string::npos) << msg;
}

TEST(ChatTemplateSandbox, NoHostObjects) {
  // Python's escape hatches do not exist in the value model: they are undefined, and reaching
  // through an undefined value is an error.
  EXPECT_EQ(render("{{ messages.__class__ }}|{{ ''.__class__ }}|{{ self }}|{{ config }}|{{ request }}|{{ os }}"),
            "|||||");
  EXPECT_NE(render_error("{{ ''.__class__.__mro__ }}").find("undefined"), std::string::npos);
  EXPECT_NE(render_error("{{ range.__globals__['os'] }}").find("undefined"), std::string::npos);
  EXPECT_NE(render_error("{% set ns = namespace() %}{% set ns.__dict__ = 1 %}").find("underscore"), std::string::npos);
  EXPECT_NE(render_error("{% set x = 'a' %}{% set x.attr = 1 %}").find("namespace"), std::string::npos);
}

TEST(ChatTemplateSandbox, CyclesAndDeepNestingAreFreedSafely) {
  // A million-level nested list (built within the step cap) is freed without recursion.
  EXPECT_EQ(render("{% set ns = namespace(l=[]) %}{% for i in range(100000) %}{% set ns.l = [ns.l] %}{% endfor %}ok"),
            "ok");
  EXPECT_NE(render_error("{% set ns = namespace(l=[]) %}{% for i in range(1000) %}{% set ns.l = [ns.l] %}{% endfor %}"
                         "{{ ns.l }}")
                .find("deeper"),
            std::string::npos);
  // Reference cycles (which leak with reference counting) are broken when render() returns;
  // LeakSanitizer checks this in the sanitizer build.
  EXPECT_EQ(render("{% set xs = [] %}{% set _ = xs.append(xs) %}{{ xs | length }}"), "1");
  EXPECT_EQ(render("{% set ns = namespace() %}{% set ns.me = ns %}{{ ns.me.me is defined }}"), "True");
  EXPECT_EQ(render("{% macro m() %}x{% endmacro %}{% set ns = namespace(f=m) %}{{ ns.f() }}"), "x");
  EXPECT_NE(render_error("{% set ns = namespace() %}{% for i in [1] %}{% macro m() %}x{% endmacro %}{% set ns.f = m %}"
                         "{% endfor %}{{ ns.f() }}")
                .find("called after"),
            std::string::npos);
}

TEST(ChatTemplateSandbox, TemplateSizeCap) {
  ChatTemplateOptions opts;
  opts.max_template_bytes = 100;
  std::string msg = render_error(std::string(200, 'x'), opts);
  EXPECT_NE(msg.find("max_template_bytes"), std::string::npos) << msg;
}

TEST(ChatTemplateSandbox, RequestTemplatesAreOffByDefault) {
  ChatTemplateOptions opts;
  EXPECT_EQ(select_chat_template("model", "", opts), "model");
  EXPECT_THROW(select_chat_template("model", "{{ evil }}", opts), Error);
  opts.allow_request_templates = true;
  EXPECT_EQ(select_chat_template("model", "{{ ok }}", opts), "{{ ok }}");
}

TEST(ChatTemplateSandbox, GarbageNeverCrashes) {
  // A cheap in-test fuzz: every truncation of a real template, and byte mutations of it, must
  // either render or throw llmkit::Error.
  std::ifstream f(std::filesystem::path(LLMKIT_TESTDATA_DIR) / "templates" / "src" / "kitchen_sink.jinja");
  std::stringstream ss;
  ss << f.rdbuf();
  std::string src = ss.str();
  ChatTemplateOptions opts;
  opts.limits.max_steps = 200000;
  auto try_one = [&](const std::string& t) {
    try {
      render(t, one_user(), true, opts);
    } catch (const Error&) {
    }
  };
  for (size_t n = 0; n < src.size(); n += 7) try_one(src.substr(0, n));
  uint32_t rng = 12345;
  const char bytes[] = "{}%#-+()[]|.,'\"\\\n ~*/x0";
  for (int i = 0; i < 300; ++i) {
    std::string t = src;
    for (int k = 0; k < 3; ++k) {
      rng = rng * 1103515245u + 12345u;
      size_t pos = (rng >> 8) % t.size();
      rng = rng * 1103515245u + 12345u;
      t[pos] = bytes[(rng >> 8) % (sizeof(bytes) - 1)];
    }
    try_one(t);
  }
}

}  // namespace
}  // namespace llmkit::tokenizer

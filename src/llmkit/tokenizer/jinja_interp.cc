// Statements, expressions, operators and macro calls of the template interpreter, with the
// sandbox caps checked as it goes (see jinja_interp.h). Filters, tests, methods and global
// functions are in jinja_builtins.cc.
#include "llmkit/tokenizer/jinja_interp.h"

#include <cmath>

#include "llmkit/base/check.h"

namespace llmkit::tokenizer::jinja {

struct Interpreter::DepthGuard {
  DepthGuard(Interpreter* in, int line) : in_(in) {
    if (++in_->depth_ > in_->opts_.limits.max_depth)
      in_->fail(line, str_cat("exceeded the recursion depth cap (max_depth=", in_->opts_.limits.max_depth,
                              "): recursive macro or too deeply nested template"));
  }
  ~DepthGuard() { --in_->depth_; }
  Interpreter* in_;
};

// ---- caps and errors -------------------------------------------------------------------------

void Interpreter::step() {
  if (++steps_ > opts_.limits.max_steps)
    throw Error(ErrorCode::kInvalidArgument,
                str_cat("chat template exceeded the step cap (max_steps=", opts_.limits.max_steps,
                        "): too many loop iterations or evaluations"),
                "the template loops too long for this conversation");
}

void Interpreter::check_string_size(size_t n, int line) const {
  if (n > opts_.limits.max_output_bytes)
    fail(line, str_cat("a string of ", n, " bytes exceeds the output size cap (max_output_bytes=",
                       opts_.limits.max_output_bytes, ")"));
}

void Interpreter::check_list_size(size_t n, int line) const {
  if (n > opts_.limits.max_list_items)
    fail(line, str_cat("a list of ", n, " items exceeds the list size cap (max_list_items=",
                       opts_.limits.max_list_items, ")"));
}

void Interpreter::fail(int line, const std::string& msg) const {
  throw Error(ErrorCode::kInvalidArgument, str_cat("chat template error at line ", line, ": ", msg));
}

Value Interpreter::make_string(std::string s, int line) const {
  check_string_size(s.size(), line);
  return Value::string(std::move(s));
}

Value Interpreter::make_list(List items, int line) const {
  check_list_size(items.size(), line);
  return Value::list(std::move(items));
}

// ---- statements ------------------------------------------------------------------------------

std::string Interpreter::render(const Program& prog, const std::map<std::string, Value>& context) {
  auto globals = std::make_shared<Scope>();
  for (const char* fn : {"range", "namespace", "dict", "raise_exception", "strftime_now"}) {
    auto c = std::make_shared<Callable>();
    c->kind = Callable::Kind::kBuiltin;
    c->name = fn;
    globals->vars[fn] = Value::callable(std::move(c));
  }
  auto scope = std::make_shared<Scope>();
  scope->parent = globals;
  for (const auto& [k, v] : context) scope->vars[k] = v;
  struct BreakCycles {
    Interpreter* in;
    ~BreakCycles() {
      // Move out first: clearing a container can drop the last reference to another one.
      auto lists = std::move(in->mutated_lists_);
      auto dicts = std::move(in->mutated_dicts_);
      for (auto& l : lists) l->clear();
      for (auto& d : dicts) d->clear();
    }
  } break_cycles{this};
  std::string out;
  Flow f = exec_list(prog.body, scope, &out);
  if (f != Flow::kNormal) fail(0, "{% break %} or {% continue %} outside a for loop");
  return out;
}

void Interpreter::note_mutation(const std::shared_ptr<List>& l) {
  if (mutated_.insert(l.get()).second) mutated_lists_.push_back(l);
}

void Interpreter::note_mutation(const std::shared_ptr<Dict>& d) {
  if (mutated_.insert(d.get()).second) mutated_dicts_.push_back(d);
}

Interpreter::Flow Interpreter::exec_list(const StmtList& body, const ScopePtr& scope, std::string* out) {
  for (const StmtPtr& s : body) {
    Flow f = exec(*s, scope, out);
    if (f != Flow::kNormal) return f;
  }
  return Flow::kNormal;
}

std::string Interpreter::render_body(const StmtList& body, const ScopePtr& scope) {
  std::string out;
  Flow f = exec_list(body, scope, &out);
  if (f != Flow::kNormal) fail(body.empty() ? 0 : body[0]->line, "{% break %} or {% continue %} outside a for loop");
  return out;
}

Interpreter::Flow Interpreter::exec(const Stmt& s, const ScopePtr& scope, std::string* out) {
  step();
  DepthGuard guard(this, s.line);
  switch (s.kind) {
    case StmtKind::kText:
      check_string_size(out->size() + s.text.size(), s.line);
      *out += s.text;
      return Flow::kNormal;
    case StmtKind::kOutput: {
      Value v = eval(*s.expr, scope);
      if (v.is_string()) {
        check_string_size(out->size() + v.str().size(), s.line);
        *out += v.str();
      } else {
        std::string text = v.to_str();
        check_string_size(out->size() + text.size(), s.line);
        *out += text;
      }
      return Flow::kNormal;
    }
    case StmtKind::kIf:
      if (eval(*s.expr, scope).truthy()) return exec_list(s.body, scope, out);
      return exec_list(s.orelse, scope, out);
    case StmtKind::kFor: return exec_for(s, scope, out);
    case StmtKind::kSet: exec_set(s, scope); return Flow::kNormal;
    case StmtKind::kSetBlock: {
      Value v = Value::string(render_body(s.body, scope));
      if (s.expr) {
        std::vector<Value> args;
        std::vector<std::pair<std::string, Value>> kwargs;
        // The filter chain's innermost object is null: apply the chain to v from the inside out.
        std::vector<const Expr*> chain;
        for (const Expr* f = s.expr.get(); f; f = f->args[0].get()) chain.push_back(f);
        for (auto it = chain.rbegin(); it != chain.rend(); ++it) {
          const Expr& f = **it;
          args.clear();
          kwargs.clear();
          for (size_t i = 1; i < f.args.size(); ++i) args.push_back(eval(*f.args[i], scope));
          for (const auto& [k, ke] : f.kwargs) kwargs.emplace_back(k, eval(*ke, scope));
          v = apply_filter(f.name, v, args, kwargs, f.line);
        }
      }
      assign(scope, s.targets, v, s.line);
      return Flow::kNormal;
    }
    case StmtKind::kFilterBlock: {
      Value v = Value::string(render_body(s.body, scope));
      std::vector<const Expr*> chain;
      for (const Expr* f = s.expr.get(); f; f = f->args[0].get()) chain.push_back(f);
      for (auto it = chain.rbegin(); it != chain.rend(); ++it) {
        const Expr& f = **it;
        std::vector<Value> args;
        std::vector<std::pair<std::string, Value>> kwargs;
        for (size_t i = 1; i < f.args.size(); ++i) args.push_back(eval(*f.args[i], scope));
        for (const auto& [k, ke] : f.kwargs) kwargs.emplace_back(k, eval(*ke, scope));
        v = apply_filter(f.name, v, args, kwargs, f.line);
      }
      std::string text = v.to_str();
      check_string_size(out->size() + text.size(), s.line);
      *out += text;
      return Flow::kNormal;
    }
    case StmtKind::kMacro: {
      auto c = std::make_shared<Callable>();
      c->kind = Callable::Kind::kMacro;
      c->stmt = &s;
      c->scope = scope;
      c->name = s.name;
      scope->vars[s.name] = Value::callable(std::move(c));
      return Flow::kNormal;
    }
    case StmtKind::kCallBlock: {
      pending_caller_ = &s;
      pending_caller_scope_ = scope;
      Value v = eval(*s.expr, scope);
      pending_caller_ = nullptr;
      pending_caller_scope_.reset();
      std::string text = v.to_str();
      check_string_size(out->size() + text.size(), s.line);
      *out += text;
      return Flow::kNormal;
    }
    case StmtKind::kBreak: return Flow::kBreak;
    case StmtKind::kContinue: return Flow::kContinue;
    case StmtKind::kScope: return exec_list(s.body, scope, out);
  }
  return Flow::kNormal;
}

void Interpreter::assign(const ScopePtr& scope, const std::vector<std::string>& targets, const Value& v, int line) {
  if (targets.size() == 1) {
    scope->vars[targets[0]] = v;
    return;
  }
  std::vector<Value> parts = iterate(v, line);
  if (parts.size() != targets.size())
    fail(line, str_cat("cannot unpack ", parts.size(), " values into ", targets.size(), " names"));
  for (size_t i = 0; i < targets.size(); ++i) scope->vars[targets[i]] = parts[i];
}

void Interpreter::exec_set(const Stmt& s, const ScopePtr& scope) {
  Value v = eval(*s.expr, scope);
  if (s.attr.empty()) {
    assign(scope, s.targets, v, s.line);
    return;
  }
  Value target = lookup(s.targets[0], scope);
  if (target.kind() != Value::Kind::kNamespace)
    fail(s.line, str_cat("cannot assign attribute '", s.attr, "' on '", s.targets[0],
                         "': only namespace() objects allow attribute assignment"));
  if (s.attr[0] == '_')  // transformers' TemplateNamespace refuses these
    fail(s.line, str_cat("cannot assign underscore-prefixed attribute '", s.attr, "' on a namespace"));
  note_mutation(target.shared_dict());
  target.dict_ref().set(s.attr, std::move(v));
}

Interpreter::Flow Interpreter::exec_for(const Stmt& s, const ScopePtr& scope, std::string* out) {
  Value iterable = eval(*s.expr, scope);
  std::vector<Value> items = iterate(iterable, s.line);
  if (s.cond) {  // `for x in xs if cond`: filtered before the loop, so loop.length counts survivors
    std::vector<Value> kept;
    for (Value& item : items) {
      step();
      auto iter_scope = std::make_shared<Scope>();
      iter_scope->parent = scope;
      assign(iter_scope, s.targets, item, s.line);
      if (eval(*s.cond, iter_scope).truthy()) kept.push_back(std::move(item));
    }
    items = std::move(kept);
  }
  if (items.empty()) return exec_list(s.orelse, scope, out);
  auto info = std::make_shared<LoopInfo>();
  info->length = static_cast<int64_t>(items.size());
  std::shared_ptr<const List> shared_items = new_list(std::move(items));
  info->items = shared_items;
  for (size_t i = 0; i < shared_items->size(); ++i) {
    step();
    auto loop = std::make_shared<LoopInfo>(*info);
    loop->index0 = static_cast<int64_t>(i);
    auto iter_scope = std::make_shared<Scope>();
    iter_scope->parent = scope;
    assign(iter_scope, s.targets, (*shared_items)[i], s.line);
    iter_scope->vars["loop"] = Value::loop(std::move(loop));
    Flow f = exec_list(s.body, iter_scope, out);
    if (f == Flow::kBreak) break;
  }
  return Flow::kNormal;
}

// ---- expressions -----------------------------------------------------------------------------

Value Interpreter::lookup(const std::string& name, const ScopePtr& scope) const {
  for (const Scope* s = scope.get(); s; s = s->parent.get()) {
    auto it = s->vars.find(name);
    if (it != s->vars.end()) return it->second;
  }
  return Value::undefined(name);
}

Value Interpreter::eval(const Expr& e, const ScopePtr& scope) {
  step();
  DepthGuard guard(this, e.line);
  switch (e.kind) {
    case ExprKind::kLiteral: return e.literal;
    case ExprKind::kName: return lookup(e.name, scope);
    case ExprKind::kList:
    case ExprKind::kTuple: {
      List items;
      for (const ExprPtr& a : e.args) items.push_back(eval(*a, scope));
      return Value::list(std::move(items));
    }
    case ExprKind::kDict: {
      auto d = new_dict();
      for (size_t i = 0; i + 1 < e.args.size(); i += 2) {
        Value k = eval(*e.args[i], scope);
        d->set(k.to_str(), eval(*e.args[i + 1], scope));
      }
      return Value::dict(std::move(d));
    }
    case ExprKind::kAttr: return get_attr(eval(*e.args[0], scope), e.name, e.line);
    case ExprKind::kItem: return get_item(eval(*e.args[0], scope), eval(*e.args[1], scope), e.line);
    case ExprKind::kSlice: {
      Value obj = eval(*e.args[0], scope);
      Value parts[3];
      for (int i = 0; i < 3; ++i)
        parts[i] = e.args[static_cast<size_t>(i) + 1] ? eval(*e.args[static_cast<size_t>(i) + 1], scope) : Value::none();
      return slice(obj, parts[0], parts[1], parts[2], e.line);
    }
    case ExprKind::kCall: return eval_call(e, scope);
    case ExprKind::kFilter: {
      Value v = eval(*e.args[0], scope);
      std::vector<Value> args;
      std::vector<std::pair<std::string, Value>> kwargs;
      for (size_t i = 1; i < e.args.size(); ++i) args.push_back(eval(*e.args[i], scope));
      for (const auto& [k, ke] : e.kwargs) kwargs.emplace_back(k, eval(*ke, scope));
      return apply_filter(e.name, v, args, kwargs, e.line);
    }
    case ExprKind::kTest: {
      Value v = eval(*e.args[0], scope);
      std::vector<Value> args;
      for (size_t i = 1; i < e.args.size(); ++i) args.push_back(eval(*e.args[i], scope));
      return Value::boolean(apply_test(e.name, v, args, e.line) != e.negate);
    }
    case ExprKind::kUnary: {
      Value v = eval(*e.args[0], scope);
      if (e.name == "not") return Value::boolean(!v.truthy());
      if (!v.is_number()) fail(e.line, str_cat("bad operand type for unary ", e.name, ": '", v.type_name(), "'"));
      if (e.name == "+") return v.is_bool() ? Value::integer(v.as_int()) : v;
      if (v.is_float()) return Value::number(-v.as_double());
      if (v.as_int() == INT64_MIN) fail(e.line, "integer overflow");
      return Value::integer(-v.as_int());
    }
    case ExprKind::kBinary: return eval_binary(e, scope);
    case ExprKind::kCompare: return eval_compare(e, scope);
    case ExprKind::kCond:
      if (eval(*e.args[1], scope).truthy()) return eval(*e.args[0], scope);
      return e.args[2] ? eval(*e.args[2], scope) : Value::undefined();
  }
  return Value::undefined();
}

Value Interpreter::eval_binary(const Expr& e, const ScopePtr& scope) {
  if (e.name == "and") {
    Value a = eval(*e.args[0], scope);
    return a.truthy() ? eval(*e.args[1], scope) : a;
  }
  if (e.name == "or") {
    Value a = eval(*e.args[0], scope);
    return a.truthy() ? a : eval(*e.args[1], scope);
  }
  Value a = eval(*e.args[0], scope);
  Value b = eval(*e.args[1], scope);
  return binary_op(e.name, a, b, e.line);
}

namespace {
int64_t floor_div(int64_t a, int64_t b) {
  int64_t q = a / b;
  if ((a % b != 0) && ((a < 0) != (b < 0))) --q;
  return q;
}
}  // namespace

Value Interpreter::binary_op(const std::string& op, const Value& a, const Value& b, int line) {
  if (op == "~") {
    std::string s = a.is_string() ? a.str() : a.to_str();
    std::string t = b.is_string() ? b.str() : b.to_str();
    check_string_size(s.size() + t.size(), line);
    return Value::string(s + t);
  }
  if (a.is_undefined() || b.is_undefined()) {
    const Value& u = a.is_undefined() ? a : b;
    fail(line, u.undefined_name().empty() ? "operand is undefined"
                                          : str_cat("'", u.undefined_name(), "' is undefined"));
  }
  auto type_error = [&]() {
    fail(line, str_cat("unsupported operand type(s) for ", op, ": '", a.type_name(), "' and '", b.type_name(), "'"));
  };
  if (op == "+") {
    if (a.is_string() && b.is_string()) {
      check_string_size(a.str().size() + b.str().size(), line);
      return Value::string(a.str() + b.str());
    }
    if (a.is_list() && b.is_list()) {
      List items = a.items();
      items.insert(items.end(), b.items().begin(), b.items().end());
      return make_list(std::move(items), line);
    }
  }
  if (op == "*" && (a.is_string() || a.is_list() || b.is_string() || b.is_list())) {
    const Value& seq = (a.is_string() || a.is_list()) ? a : b;
    const Value& n = (a.is_string() || a.is_list()) ? b : a;
    if (!n.is_int() && !n.is_bool()) type_error();
    int64_t count = std::max<int64_t>(0, n.as_int());
    size_t unit = seq.is_string() ? seq.str().size() : seq.items().size();
    uint64_t total = 0;
    if (!checked_mul(unit, static_cast<uint64_t>(count), &total)) total = UINT64_MAX;
    if (seq.is_string()) {
      check_string_size(total, line);
      std::string s;
      s.reserve(total);
      for (int64_t i = 0; i < count; ++i) s += seq.str();
      return Value::string(std::move(s));
    }
    check_list_size(total, line);
    List items;
    for (int64_t i = 0; i < count; ++i) items.insert(items.end(), seq.items().begin(), seq.items().end());
    return Value::list(std::move(items));
  }
  if (!a.is_number() || !b.is_number()) type_error();
  bool use_float = a.is_float() || b.is_float() || op == "/";
  if (op == "**" && !use_float && b.as_int() < 0) use_float = true;
  if (use_float) {
    double x = a.as_double(), y = b.as_double();
    if (op == "+") return Value::number(x + y);
    if (op == "-") return Value::number(x - y);
    if (op == "*") return Value::number(x * y);
    if (op == "**") return Value::number(std::pow(x, y));
    if (y == 0.0) fail(line, "division by zero");
    if (op == "/") return Value::number(x / y);
    if (op == "//") return Value::number(std::floor(x / y));
    if (op == "%") {
      double r = std::fmod(x, y);
      if (r != 0.0 && ((r < 0) != (y < 0))) r += y;
      return Value::number(r);
    }
    type_error();
  }
  int64_t x = a.as_int(), y = b.as_int(), r = 0;
  bool overflow = false;
  if (op == "+") overflow = __builtin_add_overflow(x, y, &r);
  else if (op == "-") overflow = __builtin_sub_overflow(x, y, &r);
  else if (op == "*") overflow = __builtin_mul_overflow(x, y, &r);
  else if (op == "**") {
    r = 1;
    for (int64_t i = 0; i < y && !overflow; ++i) {
      overflow = __builtin_mul_overflow(r, x, &r);
      if (r == 0 || r == 1) break;  // 0**n, 1**n
      if (r == -1) { r = (y % 2 == 0) ? 1 : -1; break; }
    }
  } else if (op == "//" || op == "%") {
    if (y == 0) fail(line, "integer division or modulo by zero");
    if (x == INT64_MIN && y == -1) overflow = true;
    else if (op == "//") r = floor_div(x, y);
    else r = x - floor_div(x, y) * y;
  } else {
    type_error();
  }
  if (overflow) fail(line, str_cat("integer overflow in ", x, " ", op, " ", y, " (llmkit integers are 64-bit)"));
  return Value::integer(r);
}

Value Interpreter::eval_compare(const Expr& e, const ScopePtr& scope) {
  Value left = eval(*e.args[0], scope);
  for (size_t i = 0; i < e.ops.size(); ++i) {
    Value right = eval(*e.args[i + 1], scope);
    const std::string& op = e.ops[i];
    bool r = false;
    if (op == "==") r = values_equal(left, right);
    else if (op == "!=") r = !values_equal(left, right);
    else if (op == "in") r = contains(right, left, e.line);
    else if (op == "notin") r = !contains(right, left, e.line);
    else {
      bool ok = true;
      if (op == "<") r = value_less(left, right, &ok);
      else if (op == ">") r = value_less(right, left, &ok);
      else if (op == "<=") r = !value_less(right, left, &ok);
      else r = !value_less(left, right, &ok);
      if (!ok)
        fail(e.line, str_cat("'", op, "' not supported between instances of '", left.type_name(), "' and '",
                             right.type_name(), "'"));
    }
    if (!r) return Value::boolean(false);
    left = std::move(right);
  }
  return Value::boolean(true);
}

Value Interpreter::eval_call(const Expr& e, const ScopePtr& scope) {
  // A pending {% call %} caller belongs to this call only, not to calls inside its arguments.
  const Stmt* caller = pending_caller_;
  ScopePtr caller_scope = std::move(pending_caller_scope_);
  pending_caller_ = nullptr;
  std::vector<Value> args;
  std::vector<std::pair<std::string, Value>> kwargs;
  const Expr& callee = *e.args[0];
  Value obj;
  if (callee.kind == ExprKind::kAttr) obj = eval(*callee.args[0], scope);
  for (size_t i = 1; i < e.args.size(); ++i) args.push_back(eval(*e.args[i], scope));
  for (const auto& [k, ke] : e.kwargs) kwargs.emplace_back(k, eval(*ke, scope));
  if (caller) {
    auto c = std::make_shared<Callable>();
    c->kind = Callable::Kind::kCaller;
    c->stmt = caller;
    c->scope = caller_scope;
    c->name = "caller";
    kwargs.emplace_back("caller", Value::callable(std::move(c)));
  }
  Value fn;
  if (callee.kind == ExprKind::kAttr) {
    Value result;
    if (call_method(obj, callee.name, args, kwargs, e.line, &result)) return result;
    fn = get_attr(obj, callee.name, e.line);
  } else {
    fn = eval(callee, scope);
  }
  return call_value(fn, std::move(args), std::move(kwargs), e.line);
}

Value Interpreter::call_value(const Value& fn, std::vector<Value> args,
                              std::vector<std::pair<std::string, Value>> kwargs, int line) {
  if (fn.is_undefined())
    fail(line, fn.undefined_name().empty() ? "called an undefined value"
                                           : str_cat("'", fn.undefined_name(), "' is undefined"));
  if (!fn.is_callable()) fail(line, str_cat("'", fn.type_name(), "' object is not callable"));
  const Callable& c = fn.fn();
  if (c.kind == Callable::Kind::kBuiltin) return call_builtin(c.name, args, kwargs, line);
  return call_macro(c, std::move(args), std::move(kwargs), line);
}

Value Interpreter::call_macro(const Callable& c, std::vector<Value> args,
                              std::vector<std::pair<std::string, Value>> kwargs, int line) {
  DepthGuard guard(this, line);
  const Stmt& m = *c.stmt;
  auto scope = std::make_shared<Scope>();
  scope->parent = c.scope.lock();
  if (!scope->parent) fail(line, str_cat("'", c.name, "' is called after the block that defined it ended"));
  if (args.size() > m.params.size())
    fail(line, str_cat(c.name, "() takes ", m.params.size(), " arguments but ", args.size(), " were given"));
  std::vector<bool> bound(m.params.size(), false);
  for (size_t i = 0; i < args.size(); ++i) {
    scope->vars[m.params[i]] = std::move(args[i]);
    bound[i] = true;
  }
  for (auto& [k, v] : kwargs) {
    size_t i = 0;
    while (i < m.params.size() && m.params[i] != k) ++i;
    if (i == m.params.size()) {
      if (k == "caller" && c.kind == Callable::Kind::kMacro) {
        scope->vars["caller"] = std::move(v);
        continue;
      }
      fail(line, str_cat(c.name, "() got an unexpected keyword argument '", k, "'"));
    }
    scope->vars[k] = std::move(v);
    bound[i] = true;
  }
  for (size_t i = 0; i < m.params.size(); ++i) {
    if (bound[i]) continue;
    scope->vars[m.params[i]] = m.defaults[i] ? eval(*m.defaults[i], scope) : Value::undefined(m.params[i]);
  }
  return make_string(render_body(m.body, scope), line);
}

}  // namespace llmkit::tokenizer::jinja

// Training config files: JSON, YAML (yaml-cpp) or TOML (toml++), by extension, as one JSON object
// for train_config_from_json (include/llmkit/train.h).
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <toml++/toml.h>
#include <yaml-cpp/yaml.h>

#include "llmkit/base/check.h"
#include "llmkit/train.h"

namespace llmkit {
namespace {

using nlohmann::json;

// A YAML node as JSON: scalars that read as JSON numbers or booleans (YAML 1.2's core schema:
// 3, 1e-4, true) become those, other scalars strings; sequences and maps recurse.
json yaml_to_json(const YAML::Node& n) {
  switch (n.Type()) {
    case YAML::NodeType::Map: {
      json o = json::object();
      for (const auto& kv : n) o[kv.first.as<std::string>()] = yaml_to_json(kv.second);
      return o;
    }
    case YAML::NodeType::Sequence: {
      json a = json::array();
      for (const auto& v : n) a.push_back(yaml_to_json(v));
      return a;
    }
    case YAML::NodeType::Scalar: {
      const std::string s = n.as<std::string>();
      if (n.Tag() != "!") {  // not a quoted string
        const json v = json::parse(s, nullptr, false);
        if (!v.is_discarded() && (v.is_number() || v.is_boolean())) return v;
        if (s == "True" || s == "TRUE") return true;
        if (s == "False" || s == "FALSE") return false;
      }
      return s;
    }
    default:
      return nullptr;
  }
}

std::string extension(const std::string& path) {
  const size_t dot = path.find_last_of('.');
  std::string e = dot == std::string::npos ? std::string() : path.substr(dot + 1);
  for (char& c : e) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return e;
}

}  // namespace

std::string train_config_file_json(const std::string& path) {
  std::ifstream in(path);
  LLMKIT_CHECK(static_cast<bool>(in), kNotFound, "cannot read the config '", path, "'",
               "; pass an existing .json, .yaml or .toml file");
  const std::string ext = extension(path);
  json j;
  if (ext == "yaml" || ext == "yml") {
    try {
      j = yaml_to_json(YAML::Load(in));
    } catch (const YAML::Exception& e) {
      throw Error(ErrorCode::kInvalidArgument, str_cat("config '", path, "' is not valid YAML: ", e.what()),
                  "write key: value lines (seq_len: 256)");
    }
  } else if (ext == "toml") {
    try {
      const toml::table t = toml::parse(in, path);
      std::ostringstream s;
      s << toml::json_formatter{t};
      j = json::parse(s.str());
    } catch (const toml::parse_error& e) {
      std::ostringstream where;
      where << e.source().begin;
      throw Error(ErrorCode::kInvalidArgument,
                  str_cat("config '", path, "' is not valid TOML at ", where.str(), ": ", e.description()),
                  "write key = value lines (seq_len = 256)");
    }
  } else {
    j = json::parse(in, nullptr, false);
    LLMKIT_CHECK(!j.is_discarded(), kInvalidArgument, "config '", path, "' is not valid JSON",
                 "; write {\"model\": ..., \"data\": ..., \"out\": ...} (or use a .yaml / .toml file)");
  }
  LLMKIT_CHECK(j.is_object(), kInvalidArgument, "config '", path, "' must hold one object/table of settings",
               "; write model, data, out, seq_len, ... as top-level keys");
  return j.dump();
}

}  // namespace llmkit

// Python str semantics on UTF-8 strings, for the template builtins: Python strings index, slice,
// count and strip by code point, and strip()/split() use Unicode whitespace. Case mapping
// (upper/lower/title/capitalize) is ASCII-only: chat templates apply it to roles and keywords.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace llmkit::tokenizer::jinja {

size_t py_len(const std::string& s);  // code points
// Python s[start:stop:step] on code points (indices already normalized by the caller).
std::string py_encode(const std::vector<uint32_t>& cps, size_t begin, size_t end);

enum class StripSide { kBoth, kLeft, kRight };
// str.strip(chars): chars == nullptr strips Unicode whitespace.
std::string py_strip(const std::string& s, const std::string* chars, StripSide side);
// str.split(sep, maxsplit): sep == nullptr splits on runs of whitespace.
std::vector<std::string> py_split(const std::string& s, const std::string* sep, int64_t maxsplit);
// str.replace(old, new, count); count < 0 replaces all.
std::string py_replace(const std::string& s, const std::string& from, const std::string& to, int64_t count);
size_t py_count(const std::string& s, const std::string& sub);
int64_t py_find(const std::string& s, const std::string& sub);  // code point index or -1

std::string ascii_upper(std::string s);
std::string ascii_lower(std::string s);
std::string py_title(const std::string& s);         // str.title()
std::string jinja_title(const std::string& s);      // jinja2's |title filter
std::string py_capitalize(const std::string& s);    // str.capitalize()
std::string html_escape(const std::string& s);      // jinja2's |escape (markupsafe)
size_t word_count(const std::string& s);            // jinja2's |wordcount: matches of \w+

}  // namespace llmkit::tokenizer::jinja

#include "query/order_by.h"

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace taskd {
namespace {

constexpr size_t kMaxQuotedBytes = 40;

bool IsSpace(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' ||
         c == '\v';
}

bool IsWordChar(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
         (c >= '0' && c <= '9') || c == '_' || c == '.';
}

// Debian's Abseil is built with its own absl::string_view (not an alias of
// std::string_view), so views cross into Abseil through this.
absl::string_view Absl(std::string_view s) {
  return absl::string_view(s.data(), s.size());
}

std::string Quote(std::string_view s) {
  if (s.size() <= kMaxQuotedBytes) {
    return absl::StrCat("\"", absl::CHexEscape(Absl(s)), "\"");
  }
  return absl::StrCat(
      "\"", absl::CHexEscape(Absl(s.substr(0, kMaxQuotedBytes))), "...\"");
}

absl::Status ErrorAt(size_t offset, std::string_view what) {
  return absl::InvalidArgumentError(
      absl::StrCat("order_by: column ", offset + 1, ": ", Absl(what)));
}

std::string OrderableFieldNames() {
  std::string names;
  for (const FieldInfo& info : AllTaskFields()) {
    if (!info.orderable) continue;
    if (!names.empty()) names += ", ";
    names += info.proto_name;
  }
  return names;
}

// Scans text from the left, one key at a time. Every error names the column
// of the byte where the text stops making sense.
class OrderByParser {
 public:
  explicit OrderByParser(std::string_view text) : text_(text) {}

  absl::StatusOr<OrderBy> Parse() {
    OrderBy order;
    while (true) {
      SkipSpace();
      const size_t field_offset = pos_;
      if (AtEnd()) return ErrorAt(pos_, "expected a field name after ','");
      if (text_[pos_] == ',') {
        return ErrorAt(pos_, "expected a field name before ','");
      }
      if (!IsWordChar(text_[pos_])) return UnexpectedCharacter();
      const std::string_view name = ReadWord();
      const FieldInfo* info = FindTaskField(name);
      if (info == nullptr) {
        return ErrorAt(field_offset,
                       absl::StrCat("unknown field ", Quote(name)));
      }
      if (!info->orderable) {
        return ErrorAt(
            field_offset,
            absl::StrCat("cannot order by ", Quote(name),
                         " (orderable fields: ", OrderableFieldNames(), ")"));
      }
      for (const OrderKey& key : order) {
        if (key.field == info->field) {
          return ErrorAt(field_offset,
                         absl::StrCat("field ", Quote(name), " appears twice"));
        }
      }
      OrderKey key{info->field, false};

      SkipSpace();
      if (!AtEnd() && IsWordChar(text_[pos_])) {
        const size_t direction_offset = pos_;
        const std::string_view direction = ReadWord();
        // AIP-132 spells the direction in lower case; upper case is accepted
        // because SQL habits are common and the meaning is unambiguous.
        if (absl::EqualsIgnoreCase(Absl(direction), "desc")) {
          key.descending = true;
        } else if (!absl::EqualsIgnoreCase(Absl(direction), "asc")) {
          return ErrorAt(direction_offset,
                         absl::StrCat("expected asc or desc after ",
                                      Quote(name), ", got ", Quote(direction)));
        }
      }
      order.push_back(key);

      SkipSpace();
      if (AtEnd()) break;
      if (text_[pos_] == ',') {
        ++pos_;
        continue;
      }
      if (IsWordChar(text_[pos_])) {
        const size_t offset = pos_;
        return ErrorAt(offset, absl::StrCat("unexpected ", Quote(ReadWord()),
                                            " (separate keys with ',')"));
      }
      return UnexpectedCharacter();
    }
    bool has_id = false;
    for (const OrderKey& key : order) {
      if (key.field == TaskField::kId) has_id = true;
    }
    if (!has_id) order.push_back(OrderKey{TaskField::kId, false});
    return order;
  }

 private:
  bool AtEnd() const { return pos_ >= text_.size(); }

  void SkipSpace() {
    while (!AtEnd() && IsSpace(text_[pos_])) ++pos_;
  }

  std::string_view ReadWord() {
    const size_t start = pos_;
    while (!AtEnd() && IsWordChar(text_[pos_])) ++pos_;
    return text_.substr(start, pos_ - start);
  }

  absl::Status UnexpectedCharacter() const {
    return ErrorAt(pos_, absl::StrCat("unexpected character ",
                                      Quote(text_.substr(pos_, 1))));
  }

  std::string_view text_;
  size_t pos_ = 0;
};

}  // namespace

absl::StatusOr<OrderBy> ParseOrderBy(std::string_view text) {
  bool blank = true;
  for (char c : text) {
    if (!IsSpace(c)) {
      blank = false;
      break;
    }
  }
  if (blank) {
    return OrderBy{OrderKey{TaskField::kEnqueuedAt, false},
                   OrderKey{TaskField::kId, false}};
  }
  return OrderByParser(text).Parse();
}

std::string OrderByToString(const OrderBy& order) {
  std::string text;
  for (const OrderKey& key : order) {
    if (!text.empty()) text += ", ";
    absl::StrAppend(&text, InfoOf(key.field).proto_name,
                    key.descending ? " desc" : " asc");
  }
  return text;
}

std::vector<FieldValue> CursorOf(const OrderBy& order,
                                 const tasks::v1::Task& task) {
  std::vector<FieldValue> cursor;
  cursor.reserve(order.size());
  for (const OrderKey& key : order) {
    cursor.push_back(FieldValueOf(task, key.field));
  }
  return cursor;
}

}  // namespace taskd

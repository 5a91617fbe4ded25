#include "query/filter.h"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "google/protobuf/descriptor.h"

namespace taskd {
namespace {

// The parser recurses once per parenthesis and per NOT/-, and Matches() and
// the SQL compiler recurse once per tree level, so bounding the nesting bounds
// every stack. The length bound keeps the tree (and the SQL built from it)
// small no matter how flat it is.
constexpr int kMaxDepth = 64;
constexpr size_t kMaxFilterBytes = 8 * 1024;
// SQLite refuses expression trees deeper than 1000, and it parses a chain
// "c1 AND c2 AND ..." into a tree as deep as the chain is long. 8 KiB of
// "id:*" would be 2048 conditions; this keeps every filter well inside
// SQLite's limit however the store joins the conditions.
constexpr int kMaxConditions = 256;

// Values quoted back in error messages are shortened so that an 8 KiB literal
// does not turn into an 8 KiB status message.
constexpr size_t kMaxQuotedBytes = 40;

// The range of google.protobuf.Timestamp: 0001-01-01 to 9999-12-31. Anything
// outside cannot be the value of a task's timestamp, and rejecting it keeps
// "infinite-future" (which absl::ParseTime accepts) out of the comparisons.
constexpr int64_t kMinTimestampSeconds = -62135596800;
constexpr int64_t kMaxTimestampSeconds = 253402300799;

enum class TokenKind {
  kEnd,
  kError,  // a lexical error; `text` holds the message
  kLParen,
  kRParen,
  kColon,
  kStar,
  kMinus,
  kComparator,
  kString,  // a double-quoted string; `text` holds the unescaped value
  kWord,    // a bare word: a field name or an unquoted value
  kAnd,
  kOr,
  kNot,
};

struct Token {
  TokenKind kind = TokenKind::kEnd;
  size_t offset = 0;  // of the token's first byte in the filter text
  size_t length = 0;  // bytes of filter text the token spans
  std::string text;
  Comparator cmp = Comparator::kEq;
};

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

const char* ComparatorText(Comparator cmp) {
  switch (cmp) {
    case Comparator::kEq:
      return "=";
    case Comparator::kNe:
      return "!=";
    case Comparator::kLt:
      return "<";
    case Comparator::kLe:
      return "<=";
    case Comparator::kGt:
      return ">";
    case Comparator::kGe:
      return ">=";
  }
  return "?";
}

std::string Describe(const Token& token) {
  switch (token.kind) {
    case TokenKind::kEnd:
      return "the end of the filter";
    case TokenKind::kError:
      return "an invalid token";
    case TokenKind::kLParen:
      return "'('";
    case TokenKind::kRParen:
      return "')'";
    case TokenKind::kColon:
      return "':'";
    case TokenKind::kStar:
      return "'*'";
    case TokenKind::kMinus:
      return "'-'";
    case TokenKind::kComparator:
      return absl::StrCat("'", ComparatorText(token.cmp), "'");
    case TokenKind::kString:
      return absl::StrCat("string ", Quote(token.text));
    case TokenKind::kWord:
      return Quote(token.text);
    case TokenKind::kAnd:
      return "AND";
    case TokenKind::kOr:
      return "OR";
    case TokenKind::kNot:
      return "NOT";
  }
  return "?";
}

bool IsSpace(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' ||
         c == '\v';
}

bool IsWordStart(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
         (c >= '0' && c <= '9') || c == '_' || c == '.';
}

// '-' may continue a word (dates, UUIDs) but not start one: a leading '-' is
// the negation operator.
bool IsWordChar(char c) { return IsWordStart(c) || c == '-'; }

// Splits the whole text into tokens up front. A lexical error ends the list
// with a kError token at its position rather than failing at once, so that the
// parser reports whichever error comes first in the text.
std::vector<Token> Tokenize(std::string_view text) {
  std::vector<Token> tokens;
  size_t i = 0;
  const size_t n = text.size();
  while (true) {
    while (i < n && IsSpace(text[i])) ++i;
    Token token;
    token.offset = i;
    if (i == n) {
      tokens.push_back(std::move(token));
      return tokens;
    }
    const char c = text[i];
    const char next = i + 1 < n ? text[i + 1] : '\0';
    token.length = 1;
    switch (c) {
      case '(':
        token.kind = TokenKind::kLParen;
        break;
      case ')':
        token.kind = TokenKind::kRParen;
        break;
      case ':':
        token.kind = TokenKind::kColon;
        break;
      case '*':
        token.kind = TokenKind::kStar;
        break;
      case '-':
        token.kind = TokenKind::kMinus;
        break;
      case '=':
        token.kind = TokenKind::kComparator;
        token.cmp = Comparator::kEq;
        break;
      case '!':
        if (next != '=') {
          token.kind = TokenKind::kError;
          token.text = "'!' must be followed by '='";
          break;
        }
        token.kind = TokenKind::kComparator;
        token.cmp = Comparator::kNe;
        token.length = 2;
        break;
      case '<':
      case '>': {
        token.kind = TokenKind::kComparator;
        const bool or_equal = next == '=';
        if (c == '<') {
          token.cmp = or_equal ? Comparator::kLe : Comparator::kLt;
        } else {
          token.cmp = or_equal ? Comparator::kGe : Comparator::kGt;
        }
        token.length = or_equal ? 2 : 1;
        break;
      }
      case '"': {
        size_t j = i + 1;
        bool closed = false;
        while (j < n) {
          if (text[j] == '"') {
            closed = true;
            break;
          }
          if (text[j] == '\\') {
            const char escaped = j + 1 < n ? text[j + 1] : '\0';
            if (escaped != '"' && escaped != '\\') {
              // Points at the backslash, not the opening quote: that is
              // where the text needs fixing.
              token.kind = TokenKind::kError;
              token.offset = j;
              token.text = j + 1 < n
                               ? absl::StrCat("unknown escape sequence ",
                                              Quote(text.substr(j, 2)),
                                              " in string (only \\\" and \\\\)")
                               : "unterminated string";
              break;
            }
            token.text.push_back(escaped);
            j += 2;
            continue;
          }
          token.text.push_back(text[j]);
          ++j;
        }
        if (token.kind == TokenKind::kError) break;
        if (!closed) {
          token.kind = TokenKind::kError;
          token.text = "unterminated string";
          break;
        }
        token.kind = TokenKind::kString;
        token.length = j + 1 - i;
        break;
      }
      default: {
        if (!IsWordStart(c)) {
          token.kind = TokenKind::kError;
          token.text =
              absl::StrCat("unexpected character ", Quote(text.substr(i, 1)));
          break;
        }
        size_t j = i + 1;
        while (j < n && IsWordChar(text[j])) ++j;
        token.text = std::string(text.substr(i, j - i));
        token.length = j - i;
        if (token.text == "AND") {
          token.kind = TokenKind::kAnd;
        } else if (token.text == "OR") {
          token.kind = TokenKind::kOr;
        } else if (token.text == "NOT") {
          token.kind = TokenKind::kNot;
        } else {
          token.kind = TokenKind::kWord;
        }
        break;
      }
    }
    tokens.push_back(token);
    if (token.kind == TokenKind::kError) return tokens;
    i += token.length;
  }
}

// Columns count bytes, not characters: a filter is one line in practice, and
// byte offsets are what a client can map back without knowing the encoding.
absl::Status ErrorAt(size_t offset, std::string_view what) {
  return absl::InvalidArgumentError(
      absl::StrCat("filter: column ", offset + 1, ": ", Absl(what)));
}

absl::Status ErrorAt(const Token& token, std::string_view what) {
  return ErrorAt(token.offset, what);
}

// The allowed spellings of an enum, for error messages: "enqueued, assigned,
// ...". Built from the generated descriptor so a new value shows up by itself.
std::string EnumNames(const google::protobuf::EnumDescriptor* descriptor) {
  std::string names;
  for (int i = 0; i < descriptor->value_count(); ++i) {
    const auto* value = descriptor->value(i);
    if (value->number() == 0) continue;
    if (!names.empty()) names += ", ";
    names += value->name();
  }
  return names;
}

// Only the schema's spellings count: the proto3 JSON mapping prints the enum
// names, so a filter value means what a client reads back. The zero value
// ("STATE_UNSPECIFIED") is not a value a task can have.
template <typename Enum>
bool ParseEnumValue(const std::string& name,
                    bool (*parse)(const std::string&, Enum*), int64_t* number) {
  Enum value;
  if (!parse(name, &value) || static_cast<int>(value) == 0) return false;
  *number = static_cast<int64_t>(value);
  return true;
}

// Strict integer syntax: an optional '-' and digits. absl::SimpleAtoi alone
// would also take surrounding blanks and a '+', which a filter should not.
bool ParseInt64(std::string_view text, int64_t* value) {
  std::string_view digits = text;
  if (!digits.empty() && digits.front() == '-') digits.remove_prefix(1);
  if (digits.empty()) return false;
  for (char c : digits) {
    if (c < '0' || c > '9') return false;
  }
  return absl::SimpleAtoi(Absl(text), value);
}

template <typename T>
bool CompareValues(const T& a, Comparator cmp, const T& b) {
  switch (cmp) {
    case Comparator::kEq:
      return a == b;
    case Comparator::kNe:
      return a != b;
    case Comparator::kLt:
      return a < b;
    case Comparator::kLe:
      return a <= b;
    case Comparator::kGt:
      return a > b;
    case Comparator::kGe:
      return a >= b;
  }
  return false;
}

class Parser {
 public:
  explicit Parser(std::string_view text) : tokens_(Tokenize(text)) {}

  absl::StatusOr<std::shared_ptr<const FilterExpr>> Parse() {
    auto expr = ParseAnd(0);
    if (!expr.ok()) return expr.status();
    const Token& token = Peek();
    switch (token.kind) {
      case TokenKind::kEnd:
        break;
      case TokenKind::kError:
        return ErrorAt(token, token.text);
      case TokenKind::kRParen:
        return ErrorAt(token, "unbalanced parenthesis: ')' without '('");
      default:
        return ErrorAt(token, absl::StrCat("unexpected ", Describe(token),
                                           " after a complete expression"));
    }
    return std::make_shared<const FilterExpr>(*std::move(expr));
  }

 private:
  const Token& Peek() const { return tokens_[pos_]; }
  const Token& PeekAt(size_t ahead) const {
    // The last token is kEnd or kError, and the parser never moves past it.
    return tokens_[std::min(pos_ + ahead, tokens_.size() - 1)];
  }
  const Token& Next() {
    const Token& token = tokens_[pos_];
    if (pos_ + 1 < tokens_.size()) ++pos_;
    return token;
  }

  static bool StartsTerm(TokenKind kind) {
    return kind == TokenKind::kLParen || kind == TokenKind::kMinus ||
           kind == TokenKind::kNot || kind == TokenKind::kWord;
  }

  // Joins `children` under `kind`, splicing in children of the same kind so
  // that "a AND (b AND c)" is one three-way AND: a flatter tree keeps the SQL
  // (and every recursion over the tree) shallow.
  static FilterExpr Join(FilterExpr::Kind kind,
                         std::vector<FilterExpr> children) {
    if (children.size() == 1) return std::move(children.front());
    FilterExpr joined;
    joined.kind = kind;
    for (FilterExpr& child : children) {
      if (child.kind == kind) {
        for (FilterExpr& grandchild : child.children) {
          joined.children.push_back(std::move(grandchild));
        }
      } else {
        joined.children.push_back(std::move(child));
      }
    }
    return joined;
  }

  // AIP-160 precedence, loosest first: AND (explicit or by juxtaposition),
  // then OR, then NOT / '-'. So "a AND b OR c" is "a AND (b OR c)", and
  // "a b OR c" is "a AND (b OR c)" too.
  //
  // expr := or_expr (("AND")? or_expr)*
  absl::StatusOr<FilterExpr> ParseAnd(int depth) {
    std::vector<FilterExpr> children;
    auto first = ParseOr(depth);
    if (!first.ok()) return first.status();
    children.push_back(*std::move(first));
    while (true) {
      if (Peek().kind == TokenKind::kAnd) {
        const Token& op = Next();
        if (!StartsTerm(Peek().kind)) return ExpectedTermAfter(op);
      } else if (!StartsTerm(Peek().kind)) {
        break;
      }
      auto next = ParseOr(depth);
      if (!next.ok()) return next.status();
      children.push_back(*std::move(next));
    }
    return Join(FilterExpr::Kind::kAnd, std::move(children));
  }

  // or_expr := unary ("OR" unary)*
  absl::StatusOr<FilterExpr> ParseOr(int depth) {
    std::vector<FilterExpr> children;
    auto first = ParseUnary(depth);
    if (!first.ok()) return first.status();
    children.push_back(*std::move(first));
    while (Peek().kind == TokenKind::kOr) {
      const Token& op = Next();
      if (!StartsTerm(Peek().kind)) return ExpectedTermAfter(op);
      auto next = ParseUnary(depth);
      if (!next.ok()) return next.status();
      children.push_back(*std::move(next));
    }
    return Join(FilterExpr::Kind::kOr, std::move(children));
  }

  // unary := ("NOT" | "-") unary | primary
  absl::StatusOr<FilterExpr> ParseUnary(int depth) {
    const Token& token = Peek();
    if (token.kind != TokenKind::kNot && token.kind != TokenKind::kMinus) {
      return ParsePrimary(depth);
    }
    if (depth >= kMaxDepth) return TooDeep(token);
    Next();
    if (!StartsTerm(Peek().kind)) return ExpectedTermAfter(token);
    auto child = ParseUnary(depth + 1);
    if (!child.ok()) return child.status();
    FilterExpr negation;
    negation.kind = FilterExpr::Kind::kNot;
    negation.children.push_back(*std::move(child));
    return negation;
  }

  // primary := "(" expr ")" | field ":" "*" | field comparator literal
  absl::StatusOr<FilterExpr> ParsePrimary(int depth) {
    const Token& token = Peek();
    if (token.kind == TokenKind::kLParen) {
      if (depth >= kMaxDepth) return TooDeep(token);
      const Token& open = Next();
      if (Peek().kind == TokenKind::kRParen) {
        return ErrorAt(open, "empty parentheses");
      }
      if (!StartsTerm(Peek().kind)) return ExpectedTermAfter(open);
      auto inner = ParseAnd(depth + 1);
      if (!inner.ok()) return inner.status();
      const Token& close = Peek();
      if (close.kind == TokenKind::kRParen) {
        Next();
        return inner;
      }
      if (close.kind == TokenKind::kError) return ErrorAt(close, close.text);
      if (close.kind == TokenKind::kEnd) {
        return ErrorAt(open, "unbalanced parenthesis: '(' is never closed");
      }
      return ErrorAt(close, absl::StrCat("expected ')', AND or OR, got ",
                                         Describe(close)));
    }
    if (token.kind != TokenKind::kWord) return ExpectedTermAt(token);
    return ParseRestriction();
  }

  absl::StatusOr<FilterExpr> ParseRestriction() {
    if (++conditions_ > kMaxConditions) {
      return ErrorAt(Peek(), absl::StrCat("filter has more than ",
                                          kMaxConditions, " conditions"));
    }
    const Token& name = Next();
    const FieldInfo* info = FindTaskField(name.text);
    if (info == nullptr) {
      std::string what = absl::StrCat("unknown field ", Quote(name.text));
      if (name.text == "and" || name.text == "or" || name.text == "not") {
        absl::StrAppend(&what,
                        " (the keywords AND, OR and NOT are upper case)");
      }
      return ErrorAt(name, what);
    }
    FilterExpr expr;
    expr.field = info->field;
    const Token& op = Peek();
    if (op.kind == TokenKind::kColon) {
      Next();
      if (Peek().kind != TokenKind::kStar) {
        if (Peek().kind == TokenKind::kError) {
          return ErrorAt(Peek(), Peek().text);
        }
        return ErrorAt(Peek(), absl::StrCat("expected '*' after ':' (only ",
                                            name.text, ":* is supported)"));
      }
      Next();
      expr.kind = FilterExpr::Kind::kPresent;
      return expr;
    }
    if (op.kind != TokenKind::kComparator) {
      if (op.kind == TokenKind::kError) return ErrorAt(op, op.text);
      return ErrorAt(op,
                     absl::StrCat("expected a comparator (= != < <= > >=) "
                                  "or :* after field ",
                                  Quote(name.text), ", got ", Describe(op)));
    }
    Next();
    expr.kind = FilterExpr::Kind::kCompare;
    expr.cmp = op.cmp;

    std::string literal;
    const Token& value = Peek();
    const size_t value_offset = value.offset;
    if (value.kind == TokenKind::kString || value.kind == TokenKind::kWord) {
      literal = value.text;
      Next();
    } else if (value.kind == TokenKind::kMinus &&
               PeekAt(1).kind == TokenKind::kWord &&
               PeekAt(1).offset == value.offset + 1) {
      // "-5" lexes as negation and a word; as a value it is one literal.
      literal = absl::StrCat("-", PeekAt(1).text);
      Next();
      Next();
    } else if (value.kind == TokenKind::kError) {
      return ErrorAt(value, value.text);
    } else {
      std::string what =
          absl::StrCat("missing value after ", name.text, " ",
                       ComparatorText(op.cmp), ", got ", Describe(value));
      if (value.kind == TokenKind::kAnd || value.kind == TokenKind::kOr ||
          value.kind == TokenKind::kNot) {
        absl::StrAppend(&what, " (quote it to use it as a value)");
      }
      return ErrorAt(value, what);
    }
    auto converted = Convert(*info, literal, value_offset);
    if (!converted.ok()) return converted.status();
    expr.value = *std::move(converted);
    return RequireSet(std::move(expr));
  }

  // For the fields whose zero value means "unset" (state, result_code,
  // priority, timestamps), a comparison other than != holds only for tasks
  // where the field is set: `completedAt < X` means
  // `completedAt:* AND completedAt < X`, not "also every task that never
  // completed". The rewrite happens here, in the tree, so that the SQL store
  // and Matches() get it from the same place and cannot disagree. It is made
  // only where it changes the result, i.e. where the bare comparison would
  // accept the zero value, so `completedAt >= X` (X after the epoch) and
  // `state = started` stay a single comparison that an index can serve.
  static FilterExpr RequireSet(FilterExpr compare) {
    switch (InfoOf(compare.field).kind) {
      case FieldKind::kState:
      case FieldKind::kResultCode:
      case FieldKind::kPriority:
      case FieldKind::kTimestamp:
        break;
      case FieldKind::kString:
      case FieldKind::kInt64:
      case FieldKind::kBool:
        return compare;
    }
    const auto* value = std::get_if<int64_t>(&compare.value);
    if (compare.cmp == Comparator::kNe || value == nullptr ||
        !CompareValues(int64_t{0}, compare.cmp, *value)) {
      return compare;
    }
    FilterExpr present;
    present.kind = FilterExpr::Kind::kPresent;
    present.field = compare.field;
    FilterExpr guarded;
    guarded.kind = FilterExpr::Kind::kAnd;
    guarded.children.push_back(std::move(present));
    guarded.children.push_back(std::move(compare));
    return guarded;
  }

  absl::StatusOr<FieldValue> Convert(const FieldInfo& info,
                                     const std::string& literal,
                                     size_t offset) {
    switch (info.kind) {
      case FieldKind::kString:
        return FieldValue(literal);
      case FieldKind::kState: {
        int64_t number = 0;
        if (!ParseEnumValue(literal, &tasks::v1::Task::State_Parse, &number)) {
          return ErrorAt(
              offset, absl::StrCat(
                          Quote(literal), " is not a state (",
                          EnumNames(tasks::v1::Task::State_descriptor()), ")"));
        }
        return FieldValue(number);
      }
      case FieldKind::kResultCode: {
        int64_t number = 0;
        if (!ParseEnumValue(literal, &tasks::v1::Task::ResultCode_Parse,
                            &number)) {
          return ErrorAt(
              offset,
              absl::StrCat(Quote(literal), " is not a result_code (",
                           EnumNames(tasks::v1::Task::ResultCode_descriptor()),
                           ")"));
        }
        return FieldValue(number);
      }
      case FieldKind::kPriority: {
        const int64_t rank = PriorityRank(literal);
        if (rank == 0) {
          std::string names;
          for (int64_t r = 1; !PriorityName(r).empty(); ++r) {
            if (!names.empty()) names += ", ";
            names += PriorityName(r);
          }
          return ErrorAt(
              offset,
              absl::StrCat(Quote(literal), " is not a priority (", names, ")"));
        }
        return FieldValue(rank);
      }
      case FieldKind::kTimestamp: {
        absl::Time time;
        std::string error;
        if (!absl::ParseTime(absl::RFC3339_full, literal, &time, &error)) {
          return ErrorAt(offset,
                         absl::StrCat(Quote(literal),
                                      " is not an RFC 3339 timestamp such as "
                                      "\"2026-11-01T00:00:00Z\" (",
                                      error, ")"));
        }
        if (time < absl::FromUnixSeconds(kMinTimestampSeconds) ||
            time >= absl::FromUnixSeconds(kMaxTimestampSeconds + 1)) {
          return ErrorAt(offset, absl::StrCat(Quote(literal),
                                              " is outside the timestamp "
                                              "range 0001-01-01..9999-12-31"));
        }
        return FieldValue(absl::ToUnixMicros(time));
      }
      case FieldKind::kInt64: {
        int64_t number = 0;
        if (!ParseInt64(literal, &number)) {
          return ErrorAt(
              offset, absl::StrCat(info.proto_name, " takes an integer, got ",
                                   Quote(literal)));
        }
        return FieldValue(number);
      }
      case FieldKind::kBool: {
        if (literal == "true") return FieldValue(int64_t{1});
        if (literal == "false") return FieldValue(int64_t{0});
        return ErrorAt(
            offset, absl::StrCat(info.proto_name, " takes true or false, got ",
                                 Quote(literal)));
      }
    }
    return ErrorAt(offset, "unsupported field");
  }

  absl::Status TooDeep(const Token& token) {
    return ErrorAt(token, absl::StrCat("filter nests deeper than ", kMaxDepth,
                                       " levels of parentheses and NOT"));
  }

  absl::Status ExpectedTermAfter(const Token& after) {
    const Token& token = Peek();
    if (token.kind == TokenKind::kError) return ErrorAt(token, token.text);
    return ErrorAt(token,
                   absl::StrCat("expected a condition after ", Describe(after),
                                ", got ", Describe(token)));
  }

  absl::Status ExpectedTermAt(const Token& token) {
    if (token.kind == TokenKind::kError) return ErrorAt(token, token.text);
    if (token.kind == TokenKind::kRParen) {
      return ErrorAt(token, "unbalanced parenthesis: ')' without '('");
    }
    return ErrorAt(token,
                   absl::StrCat("expected a condition, got ", Describe(token)));
  }

  std::vector<Token> tokens_;
  size_t pos_ = 0;
  int conditions_ = 0;
};

bool IsZero(const FieldValue& value) {
  if (const auto* number = std::get_if<int64_t>(&value)) return *number == 0;
  return std::get<std::string>(value).empty();
}

}  // namespace

absl::StatusOr<std::shared_ptr<const FilterExpr>> ParseFilter(
    std::string_view text) {
  if (text.size() > kMaxFilterBytes) {
    return ErrorAt(kMaxFilterBytes, absl::StrCat("filter is longer than ",
                                                 kMaxFilterBytes, " bytes"));
  }
  bool blank = true;
  for (char c : text) {
    if (!IsSpace(c)) {
      blank = false;
      break;
    }
  }
  if (blank) return std::shared_ptr<const FilterExpr>();
  return Parser(text).Parse();
}

bool Matches(const FilterExpr* expr, const tasks::v1::Task& task) {
  if (expr == nullptr) return true;
  switch (expr->kind) {
    case FilterExpr::Kind::kAnd:
      for (const FilterExpr& child : expr->children) {
        if (!Matches(&child, task)) return false;
      }
      return true;
    case FilterExpr::Kind::kOr:
      for (const FilterExpr& child : expr->children) {
        if (Matches(&child, task)) return true;
      }
      return false;
    case FilterExpr::Kind::kNot:
      // A malformed kNot (no child) must not read out of bounds; treat it as
      // NOT(everything).
      return !expr->children.empty() && !Matches(&expr->children[0], task);
    case FilterExpr::Kind::kCompare: {
      const FieldValue actual = FieldValueOf(task, expr->field);
      // A value of the wrong type (possible only through a hand-built
      // FilterExpr) compares as "no match", like a type mismatch in SQL
      // would fail to match rather than crash.
      if (actual.index() != expr->value.index()) return false;
      if (const auto* number = std::get_if<int64_t>(&actual)) {
        return CompareValues(*number, expr->cmp,
                             std::get<int64_t>(expr->value));
      }
      return CompareValues(std::get<std::string>(actual), expr->cmp,
                           std::get<std::string>(expr->value));
    }
    case FilterExpr::Kind::kPresent:
      return !IsZero(FieldValueOf(task, expr->field));
  }
  return false;
}

std::shared_ptr<const FilterExpr> AndFilters(
    std::shared_ptr<const FilterExpr> a, std::shared_ptr<const FilterExpr> b) {
  if (a == nullptr) return b;
  if (b == nullptr) return a;
  auto joined = std::make_shared<FilterExpr>();
  joined->kind = FilterExpr::Kind::kAnd;
  for (const FilterExpr* side : {a.get(), b.get()}) {
    if (side->kind == FilterExpr::Kind::kAnd) {
      joined->children.insert(joined->children.end(), side->children.begin(),
                              side->children.end());
    } else {
      joined->children.push_back(*side);
    }
  }
  return joined;
}

std::shared_ptr<const FilterExpr> EqualsFilter(TaskField field,
                                               FieldValue value) {
  auto expr = std::make_shared<FilterExpr>();
  expr->kind = FilterExpr::Kind::kCompare;
  expr->field = field;
  expr->cmp = Comparator::kEq;
  expr->value = std::move(value);
  return expr;
}

std::optional<FieldValue> RequiredValue(const FilterExpr* expr,
                                        TaskField field) {
  if (expr == nullptr) return std::nullopt;
  if (expr->kind == FilterExpr::Kind::kCompare && expr->field == field &&
      expr->cmp == Comparator::kEq) {
    return expr->value;
  }
  if (expr->kind != FilterExpr::Kind::kAnd) return std::nullopt;
  for (const FilterExpr& child : expr->children) {
    if (std::optional<FieldValue> value = RequiredValue(&child, field)) {
      return value;
    }
  }
  return std::nullopt;
}

}  // namespace taskd

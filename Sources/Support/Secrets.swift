/// The one redaction of secrets in anything the harness prints or writes for people to read
/// (errors, notes, progress, resume hints, every report format, the HTML page): database
/// passwords never leave the process.
///
/// What counts as a password, wherever it appears in `text`:
/// - the user-info password of a `postgresql://` or `postgres://` URL, from the first `:` after
///   the scheme to the last `@` of the URL (so a password with an unencoded `@`, `/` or `:` is
///   hidden whole, never in part),
/// - the value of a `password=` parameter (a URL's query, or a libpq `key=value` string), up to
///   the next `&`, white space or quote.
///
/// Each becomes `***`. Text without a secret comes back unchanged.
public enum Secrets {
  public static let mask = "***"

  public static func redacted(_ text: String) -> String {
    guard text.contains("://") || text.lowercased().contains("password") else { return text }
    return redactingParameters(redactingURLPasswords(text))
  }

  /// Where a URL ends in running text: white space, a quote, or a closing bracket.
  private static func endsURL(_ c: Character) -> Bool { c.isWhitespace || "\"'`<>()[]{},;".contains(c) }

  private static func redactingURLPasswords(_ text: String) -> String {
    var out = ""
    var rest = Substring(text)
    while let scheme = rest.range(of: "postgres", options: .caseInsensitive) {
      out += rest[..<scheme.lowerBound]
      let fromScheme = rest[scheme.lowerBound...]
      guard let separator = fromScheme.range(of: "://"),
        fromScheme[..<separator.lowerBound].lowercased() == "postgres" || fromScheme[..<separator.lowerBound].lowercased() == "postgresql"
      else {
        out += rest[scheme]
        rest = rest[scheme.upperBound...]
        continue
      }
      let afterScheme = fromScheme[separator.upperBound...]
      let end = afterScheme.firstIndex(where: endsURL) ?? afterScheme.endIndex
      let url = afterScheme[..<end]
      // The query starts at the first `?`; the credentials end at the last `@` before it.
      let beforeQuery = url[..<(url.firstIndex(of: "?") ?? url.endIndex)]
      out += fromScheme[..<separator.upperBound]
      if let at = beforeQuery.lastIndex(of: "@"), let colon = beforeQuery[..<at].firstIndex(of: ":") {
        out += beforeQuery[...colon] + mask + url[at...]
      } else {
        out += url
      }
      rest = afterScheme[end...]
    }
    return out + rest
  }

  private static func redactingParameters(_ text: String) -> String {
    var out = ""
    var rest = Substring(text)
    while let key = rest.range(of: "password=", options: .caseInsensitive) {
      out += rest[..<key.upperBound]
      let value = rest[key.upperBound...]
      let end = value.firstIndex { $0 == "&" || $0.isWhitespace || $0 == "\"" || $0 == "'" } ?? value.endIndex
      if end > value.startIndex { out += mask }
      rest = value[end...]
    }
    return out + rest
  }
}

import Foundation

/// The one redaction of secrets in anything the harness prints or writes for people to read
/// (errors, notes, progress, resume hints, recorded run errors, every report format, the HTML
/// page): database passwords never leave the process.
///
/// Two nets, each enough alone for the forms it knows:
/// - Patterns, for any text (also text another process recorded):
///   - the user-info password of a `postgresql://` or `postgres://` URL: from the first `:` after
///     the user name to the last `@` of the URL. A password may hold any character a role's
///     password can (`@ / : ; , ( ) ' " < > [ ] { }`, white space, a backtick), so when the URL's
///     usual end (white space, quotes, brackets) comes before any `@`, the last `@` of the line
///     is taken instead: a message may lose words to the mask, never show a password;
///   - (a URL's `//` may come JSON-escaped, `:\/\/`);
///   - the value of a `password` parameter (or `PGPASSWORD`, any key ending in it), whatever its spelling: percent-encoded key names
///     (`pass%77ord=`, which libpq accepts), any case, spaces around `=` (a libpq `key = value`
///     string), a single-quoted value; up to the next `&`, `#` or white space otherwise;
///   - the token libpq quotes when it cannot decode a URL (`invalid percent-encoded token: "..."`).
/// - Known secrets: the passwords of every store URL this process opened (`register`), raw and
///   percent-decoded, masked wherever they appear verbatim, e.g. inside a server's message.
///   Passwords of at least `minimumKnownLength` characters only: masking every "ab" of every
///   line would destroy the output; shorter ones rely on the patterns, and a connection error
///   masks them in its own text (`redacted(_:also:)`).
///
/// Each becomes `***`. Text without a secret comes back unchanged.
public enum Secrets {
  public static let mask = "***"
  /// The shortest known password masked everywhere.
  public static let minimumKnownLength = 4

  private static let lock = NSLock()
  nonisolated(unsafe) private static var known: [String] = []

  public static func redacted(_ text: String) -> String {
    let known = lock.withLock { Secrets.known }
    return redacted(text, also: known)
  }

  /// `redacted(text)`, also masking `secrets` (of any length) wherever they appear.
  public static func redacted(_ text: String, also secrets: [String]) -> String {
    var out = text
    if out.contains("://") || out.contains(#":\/\/"#) || out.range(of: "pass", options: .caseInsensitive) != nil || out.contains("%") || out.contains("token") {
      out = redactingTokens(redactingParameters(redactingURLPasswords(out)))
    }
    for secret in secrets.sorted(by: { $0.count > $1.count }) where !secret.isEmpty && out.contains(secret) {
      out = out.replacingOccurrences(of: secret, with: mask)
    }
    return out
  }

  /// Remembers the passwords of a store URL (raw and percent-decoded), so that no output of
  /// this process shows them, whatever quotes them.
  public static func register(storeURL: String) {
    let forms = passwords(inURL: storeURL).filter { $0.count >= minimumKnownLength }
    guard !forms.isEmpty else { return }
    lock.withLock {
      for form in forms where !known.contains(form) { known.append(form) }
    }
  }

  /// Every password a store URL carries, in each form it may be shown in: the user-info
  /// password and `password` query parameters (any spelling of the key), raw and decoded.
  public static func passwords(inURL url: String) -> [String] {
    guard let separator = url.range(of: "://") else { return [] }
    var out: [String] = []
    let rest = url[separator.upperBound...]
    var query = Substring("")
    if let at = rest.lastIndex(of: "@") {
      let userInfo = rest[..<at]
      if let colon = userInfo.firstIndex(of: ":") { out.append(String(userInfo[userInfo.index(after: colon)...])) }
      let afterHost = rest[rest.index(after: at)...]
      query = afterHost[(afterHost.firstIndex(of: "?") ?? afterHost.endIndex)...]
    } else {
      query = rest[(rest.firstIndex(of: "?") ?? rest.endIndex)...]
    }
    for pair in query.dropFirst().split(separator: "&") {
      guard let equals = pair.firstIndex(of: "=") else { continue }
      if isPasswordKey(pair[..<equals]) { out.append(String(pair[pair.index(after: equals)...])) }
    }
    out += out.compactMap { $0.removingPercentEncoding }
    var unique: [String] = []
    for form in out where !form.isEmpty && !unique.contains(form) { unique.append(form) }
    return unique
  }

  /// Whether a parameter name means a password: `password`, or a name ending in it
  /// (`PGPASSWORD`, `db_password`), percent-decoded, any case, spaces trimmed.
  static func isPasswordKey(_ key: Substring) -> Bool {
    let trimmed = key.trimmingCharacters(in: .whitespaces)
    return (trimmed.removingPercentEncoding ?? trimmed).lowercased().hasSuffix("password")
  }

  /// Where a URL usually ends in running text: white space, a quote, or a bracket.
  private static func endsURL(_ c: Character) -> Bool { c.isWhitespace || "\"'`<>()[]{},;".contains(c) }

  private static func redactingURLPasswords(_ text: String) -> String {
    var out = ""
    var rest = Substring(text)
    while let scheme = rest.range(of: "postgres", options: .caseInsensitive) {
      out += rest[..<scheme.lowerBound]
      let fromScheme = rest[scheme.lowerBound...]
      // `://`, or `:\/\/` as JSON may write it (issue #45, cause E).
      guard let separator = [fromScheme.range(of: "://"), fromScheme.range(of: #":\/\/"#)].compactMap({ $0 }).min(by: { $0.lowerBound < $1.lowerBound }),
        ["postgres", "postgresql"].contains(fromScheme[..<separator.lowerBound].lowercased())
      else {
        out += rest[scheme]
        rest = rest[scheme.upperBound...]
        continue
      }
      out += fromScheme[..<separator.upperBound]
      let afterScheme = fromScheme[separator.upperBound...]
      // The user name runs to the first `:`; it holds no `/ ? # @` and no white space (encoded
      // if it does). Without such a `:` there is no password in this URL.
      guard let colon = afterScheme.firstIndex(where: { ":/?#@".contains($0) || $0.isWhitespace }), afterScheme[colon] == ":" else {
        rest = afterScheme
        continue
      }
      // The password ends at the last `@` of the URL as usually delimited, else at the last `@`
      // of the line before the next URL (a password with a space or a quote in it).
      let line = afterScheme[..<(afterScheme.firstIndex(where: \.isNewline) ?? afterScheme.endIndex)]
      let nextURL = line[line.index(after: colon)...].range(of: "postgres", options: .caseInsensitive)?.lowerBound ?? line.endIndex
      let usual = line[..<(line.firstIndex(where: endsURL) ?? line.endIndex)]
      let usualQueryStart = usual.firstIndex(of: "?") ?? usual.endIndex
      let at = usual[..<usualQueryStart].lastIndex(of: "@") ?? line[..<nextURL].lastIndex(of: "@")
      guard let at, at > colon else {
        rest = afterScheme
        continue
      }
      out += afterScheme[...colon] + mask
      rest = afterScheme[at...]
    }
    return out + rest
  }

  /// `password` parameters, as the type's comment says.
  private static func redactingParameters(_ text: String) -> String {
    var out = ""
    var rest = Substring(text)
    while let equals = rest.firstIndex(of: "=") {
      // The key: the word before `=` (letters, digits, `%`, `_`, `-`), spaces between allowed.
      var keyEnd = equals
      while keyEnd > rest.startIndex, rest[rest.index(before: keyEnd)] == " " { keyEnd = rest.index(before: keyEnd) }
      var keyStart = keyEnd
      while keyStart > rest.startIndex, isKeyCharacter(rest[rest.index(before: keyStart)]) { keyStart = rest.index(before: keyStart) }
      let afterEquals = rest.index(after: equals)
      guard keyStart < keyEnd, isPasswordKey(rest[keyStart..<keyEnd]) else {
        out += rest[..<afterEquals]
        rest = rest[afterEquals...]
        continue
      }
      var valueStart = afterEquals
      while valueStart < rest.endIndex, rest[valueStart] == " " { valueStart = rest.index(after: valueStart) }
      out += rest[..<valueStart]
      var value = rest[valueStart...]
      // Already masked (a message built from a redacted URL, redacted again as a whole): the
      // `:` or `,` after the mask is the message's, not the password's.
      if value.hasPrefix(mask), value.dropFirst(mask.count).first.map({ $0.isWhitespace || ":,;)&#".contains($0) }) ?? true {
        out += mask
        rest = value.dropFirst(mask.count)
        continue
      }
      if value.first == "'" {
        // libpq's quoted value: backslash escapes, up to the closing quote (or the end).
        var i = value.index(after: value.startIndex)
        while i < value.endIndex, value[i] != "'" { i = value.index(i, offsetBy: value[i] == "\\" && value.index(after: i) < value.endIndex ? 2 : 1) }
        out += "'" + mask + (i < value.endIndex ? "'" : "")
        rest = i < value.endIndex ? value[value.index(after: i)...] : value[value.endIndex...]
        continue
      }
      let end = value.firstIndex { $0 == "&" || $0 == "#" || $0.isWhitespace } ?? value.endIndex
      if end > value.startIndex { out += mask }
      value = value[end...]
      rest = value
    }
    return out + rest
  }

  private static func isKeyCharacter(_ c: Character) -> Bool { c.isLetter || c.isNumber || c == "%" || c == "_" || c == "-" }

  /// libpq's quote of a URL part it could not decode.
  private static func redactingTokens(_ text: String) -> String {
    var out = ""
    var rest = Substring(text)
    while let phrase = rest.range(of: "percent-encoded token: \"") ?? rest.range(of: "percent-encoded value: \"") {
      out += rest[..<phrase.upperBound]
      let value = rest[phrase.upperBound...]
      guard let close = value.lastIndex(of: "\"") else {
        out += mask
        rest = value[value.endIndex...]
        break
      }
      out += mask
      rest = value[close...]
    }
    return out + rest
  }
}

import Foundation
import Support
import XCTest

final class SupportTests: XCTestCase {
  /// Wilson's interval against published values (Newcombe 1998, Table I: 81/263 gives
  /// 0.2553-0.3662) and the accuracy interval's behaviour at the edges: never outside [0, 1],
  /// one-query episodes give Wilson over the episodes, a spread between episodes widens it.
  func testAccuracyIntervalsStayInsideZeroAndOne() {
    let newcombe = Statistics.wilson95(81.0 / 263.0, trials: 263)
    XCTAssertEqual(newcombe.low, 0.2553, accuracy: 5e-5)
    XCTAssertEqual(newcombe.high, 0.3662, accuracy: 5e-5)
    let perfect = Statistics.wilson95(1, trials: 20)
    XCTAssertEqual(perfect.high, 1)
    XCTAssertEqual(perfect.low, 0.8389, accuracy: 5e-5)
    // 99.6% over 250 one-query episodes: the symmetric interval would pass 100%.
    let episodes = [Double](repeating: 1, count: 249) + [0]
    let interval = Statistics.accuracyInterval95(episodes, pooled: 0.996, trials: 250)
    XCTAssert(interval.high <= 1 && interval.low > 0.97, "\(interval)")
    XCTAssertEqual(interval.low, Statistics.wilson95(0.996, trials: 250).low, accuracy: 0.01)
    // Episodes of 20 queries that disagree with each other: wider than 400 independent trials.
    let spread = [Double](repeating: 0.5, count: 10) + [Double](repeating: 1, count: 10)
    let wide = Statistics.accuracyInterval95(spread, pooled: 0.75, trials: 400)
    let independent = Statistics.wilson95(0.75, trials: 400)
    XCTAssertGreaterThan(wide.high - wide.low, independent.high - independent.low)
  }

  func testSHA256KnownVectors() {
    XCTAssertEqual(SHA256.hex([UInt8]()), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    XCTAssertEqual(SHA256.hex(Array("abc".utf8)), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    XCTAssertEqual(
      SHA256.hex(Array("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8)),
      "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
    var streamed = SHA256()
    let million = [UInt8](repeating: 0x61, count: 1_000_000)
    for start in stride(from: 0, to: million.count, by: 777) { streamed.update(million[start..<min(start + 777, million.count)]) }
    XCTAssertEqual(hexString(streamed.finalize()), "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
  }
  func testSHA256OfAFileEqualsItsBytes() throws {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("support-\(UUID().uuidString)")
    let bytes = (0..<3_000_000).map { UInt8(truncatingIfNeeded: $0 &* 31) }
    try Data(bytes).write(to: url)
    defer { try? FileManager.default.removeItem(at: url) }
    XCTAssertEqual(SHA256.hex(ofFile: url), SHA256.hex(bytes))
    XCTAssertNil(SHA256.hex(ofFile: url.appendingPathExtension("missing")))
  }

  struct Strict: Decodable {
    enum CodingKeys: String, CodingKey, CaseIterable { case a, b }
    init(from decoder: any Decoder) throws { try rejectUnknownKeys(decoder, CodingKeys.self) }
  }

  func testUnknownKeysAreRejectedWithTheAllowedOnes() throws {
    XCTAssertNoThrow(try JSONDecoder().decode(Strict.self, from: Data(#"{"a": 1}"#.utf8)))
    XCTAssertThrowsError(try JSONDecoder().decode(Strict.self, from: Data(#"{"a": 1, "c": 2}"#.utf8))) { error in
      guard case DecodingError.dataCorrupted(let context) = error else { return XCTFail("\(error)") }
      XCTAssertEqual(context.codingPath.map(\.stringValue), ["c"])
      XCTAssertEqual(context.debugDescription, "unknown key 'c'; allowed: a, b")
    }
  }

  func testNestedProblemsGetTheirPrefix() {
    let problems = nested("training", nested("optimizer", [("learningRate", "positive")]) + [("", "whole section")])
    XCTAssertEqual(problems.map(\.keyPath), ["training.optimizer.learningRate", "training"])
  }

  func testCanonicalJSONAndFlattening() throws {
    struct Value: Encodable { let b = 1; let a = [1, 2]; let c = ["x": true] }
    let json = String(decoding: try JSONEncoder.canonical().encode(Value()), as: UTF8.self)
    XCTAssertEqual(json, #"{"a":[1,2],"b":1,"c":{"x":true}}"#)
    XCTAssertEqual(flattenJSON(json).map { "\($0.key)=\($0.value)" }, ["a=1,2", "b=1", "c.x=true"])
    XCTAssertEqual(flattenJSON(#"{"e": [{"p": "lake20"}, {"p": null}]}"#).map { "\($0.key)=\($0.value)" }, ["e.0.p=lake20", "e.1.p=null"])
  }
}

final class JSONScanTests: XCTestCase {
  func problem(_ text: String) -> String? {
    JSONScan.firstProblem(Array(text.utf8)).map { "\($0.keyPath) | \($0.message)" }
  }

  func testDuplicateKeysHugeNumbersAndDeepNestingAreFound() {
    XCTAssertNil(problem(#"{"a": 1, "b": {"a": [1, 2.5e3, -0.1, true, null, "x\"y"]}}"#))
    XCTAssertEqual(problem(#"{"training": {"steps": 1, "steps": 2}}"#), "training.steps | this key is given twice; keep one")
    XCTAssertEqual(problem(#"{"evaluation": [{"seed": 1}, {"episodes": 1e309}]}"#), "evaluation[1].episodes | the number 1e309 is beyond what a 64-bit float holds")
    XCTAssertEqual(problem(String(repeating: "[", count: 300) + String(repeating: "]", count: 300))?.hasSuffix("nested deeper than 256 levels"), true)
    XCTAssertNil(problem("{ not json"), "malformed text is the decoder's to report")
  }
}

/// The one redaction: a store URL's password never reaches output, whole or in part.
final class SecretsTests: XCTestCase {
  func testPasswordsAreHiddenWholeAndEverythingElseIsKept() {
    XCTAssertEqual(Secrets.redacted("postgresql://oneshot:s3cret-pw@127.0.0.1:5499/results"), "postgresql://oneshot:***@127.0.0.1:5499/results")
    // An unencoded @, / or : in the password is hidden whole (it once showed `ss/w:rd`).
    XCTAssertEqual(Secrets.redacted("postgres://u:p@ss/w:rd@db.example:5432/x"), "postgres://u:***@db.example:5432/x")
    XCTAssertEqual(Secrets.redacted("postgresql://h/db?sslmode=require&password=s3cret&user=u"), "postgresql://h/db?sslmode=require&password=***&user=u")
    XCTAssertEqual(Secrets.redacted("host=h password=s3cret user=u"), "host=h password=*** user=u")
    // In running text, with more after it.
    XCTAssertEqual(
      Secrets.redacted("error: lost postgresql://a:b@h/db (FATAL); Continue with: --store 'postgresql://a:b@h/db'"),
      "error: lost postgresql://a:***@h/db (FATAL); Continue with: --store 'postgresql://a:***@h/db'")
    for kept in ["postgresql://oneshot@127.0.0.1:5499/results", "results/oneshot.sqlite", "PostgreSQL 15 said: password authentication failed", "https://x:y@example.com/"] {
      XCTAssertEqual(Secrets.redacted(kept), kept)
    }
  }

  /// Issue #46, cause 1: every URL form libpq accepts, and every character a role's password
  /// may hold, in the places the harness prints a URL (alone, in quotes, before `: reason`).
  func testEveryURLFormAndEveryCharacterIsHidden() {
    let specials = [";", ",", "(", ")", "'", "\"", "<", ">", "[", "]", "{", "}", " ", "`", "@", "/", ":", "?", "#", "&", "=", "%", "\\"]
    for special in specials {
      let password = "Ab\(special)9z"
      for url in ["postgresql://oneshot:\(password)@127.0.0.1:5499/results", "postgres://oneshot:\(password)@db/x?sslmode=require"] {
        for text in [url, "error: cannot reach the PostgreSQL store \(url): connection refused", "Continue with: --store '\(url)'", "recording into \(url)"] {
          let shown = Secrets.redacted(text)
          XCTAssertFalse(shown.contains("Ab") || shown.contains("9z"), "\(special.debugDescription): \(shown)")
          XCTAssert(shown.contains("oneshot:***@"), "\(special.debugDescription): \(shown)")
        }
      }
    }
    // The parameter's name percent-encoded (libpq decodes it), in any case, and its value with
    // every character a query value can carry unencoded.
    for key in ["password", "pass%77ord", "PASSWORD", "%70%61%73%73%77%6F%72%64", "Pass%57ord"] {
      for value in ["s3cret", "a;b,c(d)e'f\"g<h>i[j]k{l}m`n", "x%zz", "p@ss/w:rd"] {
        let shown = Secrets.redacted("error: cannot reach postgresql://h/db?sslmode=require&\(key)=\(value)&user=u: timeout")
        XCTAssertEqual(shown, "error: cannot reach postgresql://h/db?sslmode=require&\(key)=***&user=u: timeout", "\(key)=\(value)")
      }
    }
    // libpq's key = value strings: spaces around `=`, a quoted value with escapes and spaces.
    XCTAssertEqual(Secrets.redacted("host=h password = 'two words \\' quote' user=u"), "host=h password = '***' user=u")
    // libpq quoting the token it could not decode (an unencoded `%` in the password).
    XCTAssertEqual(
      Secrets.redacted(#"invalid percent-encoded token: "se%cret""#), #"invalid percent-encoded token: "***""#)
    // Issue #45, cause E: JSON writes `/` as `\/`; a scorer command's PGPASSWORD.
    XCTAssertEqual(Secrets.redacted(#"{"store": "postgresql:\/\/u:t0psecret@h\/d"}"#), #"{"store": "postgresql:\/\/u:***@h\/d"}"#)
    XCTAssertEqual(Secrets.redacted("PGPASSWORD=t0psecret python3 scorer.py"), "PGPASSWORD=*** python3 scorer.py")
    XCTAssertEqual(Secrets.redacted("db_password=t0psecret"), "db_password=***")
    // A message built from a redacted URL, redacted again, keeps its own punctuation.
    let once = Secrets.redacted("postgresql://h/db?password=s3cret")
    XCTAssertEqual(Secrets.redacted("cannot reach \(once): refused"), "cannot reach postgresql://h/db?password=***: refused")
    XCTAssertEqual(Secrets.redacted(Secrets.redacted("postgresql://u:pw@h/db")), "postgresql://u:***@h/db")
  }

  /// The passwords of a store URL, raw and decoded, are masked wherever they appear once the
  /// URL is registered (a server's message quoting one, a note); short ones only when asked.
  func testRegisteredPasswordsAreMaskedAnywhere() {
    let url = "postgresql://u:Zq%2Fx9-Registered@h/db?pass%77ord=Other-Secret-77"
    XCTAssertEqual(Set(Secrets.passwords(inURL: url)), ["Zq%2Fx9-Registered", "Zq/x9-Registered", "Other-Secret-77"])
    Secrets.register(storeURL: url)
    XCTAssertEqual(Secrets.redacted("FATAL: role said Zq/x9-Registered and Other-Secret-77"), "FATAL: role said *** and ***")
    XCTAssertEqual(Secrets.passwords(inURL: "postgresql://u:ab@h/db"), ["ab"])
    Secrets.register(storeURL: "postgresql://u:ab@h/db")
    XCTAssertEqual(Secrets.redacted("tab and label"), "tab and label", "a two-letter password is not masked in every word")
    XCTAssertEqual(Secrets.redacted("token ab here", also: ["ab"]), "token *** here")
  }
}

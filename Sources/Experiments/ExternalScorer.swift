import Episodes
import Foundation
import Model
import Reports
import Support

#if canImport(Glibc)
  import Glibc
#endif

/// A model that runs outside the harness (PyTorch on a GPU, ONNX Runtime, anything), scored on
/// the harness's protocols through the line protocol `oneshot-scorer` over its standard input
/// and output (docs/SCORER_PROTOCOL.md). The harness starts the command once (`/bin/sh -c`), reads
/// its hello line, then sends the images of each protocol once and asks for either embeddings
/// (compared here by the distance the scorer declares) or scores of the pairs it names; or
/// (version 2, `output=episodes`) sends each episode whole, its support images with their
/// labels and its queries, and reads one row of class scores per query. Nothing in what a scorer
/// is sent tells a label the protocol does not give: images go in a random order, pairs in a
/// random order, an episode's support and queries shuffled and its classes relabeled at random
/// (issue #45, cause D). Every
/// failure of the scorer (it does not start, dies, hangs past the timeout, writes a malformed
/// line, the wrong number of values, NaN or infinity) is one `UserFacingError` naming what went
/// wrong, and the child is ended.
package final class ExternalScorer: OneShotScorer {
  /// What the scorer said of itself in its hello line.
  package struct Hello: Equatable {
    package enum Output: String { case embeddings, scores, episodes }
    package enum Distance: String { case cosine, euclidean }
    /// The protocol version the scorer speaks (1 or 2; `episodes` needs 2).
    package let version: Int
    package let inputSize: Int
    package let output: Output
    /// How embeddings are compared (embeddings only).
    package let distance: Distance?
    /// The model's identity as the scorer states it (a checkpoint's SHA-256, a name).
    package let model: String
    /// Whether it uses an episode's queries together (their statistics, a transductive
    /// fine-tuning): `transductive=yes`, episodes only. Such figures are not comparable with
    /// inductive ones; the run records it and every report marks it.
    package let transductive: Bool
  }

  /// The hello lines a scorer may begin with, for messages.
  static let helloForms =
    "'oneshot-scorer 1 input=SIZE output=embeddings|scores [distance=cosine|euclidean] model=ID' or 'oneshot-scorer 2 input=SIZE output=embeddings|scores|episodes [distance=...] [transductive=yes|no] model=ID'"

  /// An image the scorer has seen: its number in the order sent, and its embedding (empty for
  /// a scorer of pairs); for a scorer of episodes, the image itself, sent with each episode
  /// that uses it.
  package struct Embedding {
    package let index: Int
    package let vector: [Float]
    package var pixels: [UInt8] = []
  }

  package let command: String
  package let hello: Hello
  /// Seconds the scorer may take for one reply (`ONESHOT_SCORER_TIMEOUT`, by default 300).
  package let timeout: Double
  private let process: Process
  private let input: FileHandle
  private let inputDescriptor: Int32
  private let output: Int32
  private var buffer: [UInt8] = []
  private var sent = 0
  private var ended = false
  /// The length of the first embedding; every other must have it.
  private var width: Int? = nil

  /// Starts `command` and reads its hello line; `expectedSize` is the experiment's
  /// `model.inputSize`, which the scorer must take.
  package init(command: String, expectedSize: Int, timeout: Double = ExternalScorer.defaultTimeout) throws {
    self.command = command
    self.timeout = timeout
    signal(SIGPIPE, SIG_IGN)  // a dead scorer's closed pipe is an error to report, not a signal
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/bin/sh")
    process.arguments = ["-c", command]
    let toChild = Pipe(), fromChild = Pipe()
    process.standardInput = toChild
    process.standardOutput = fromChild
    process.standardError = FileHandle.standardError
    do { try process.run() } catch { throw UserFacingError("outside scorer '\(visible(Secrets.redacted(command)))' did not start: \(error); check the command") }
    self.process = process
    input = toChild.fileHandleForWriting
    inputDescriptor = toChild.fileHandleForWriting.fileDescriptor
    _ = fcntl(inputDescriptor, F_SETFL, fcntl(inputDescriptor, F_GETFL) | O_NONBLOCK)
    output = fromChild.fileHandleForReading.fileDescriptor
    let line: String
    do {
      line = try ExternalScorer.readLine(from: output, buffer: &buffer, timeout: timeout, process: process, command: command, waitingFor: "its hello line")
    } catch is EvaluationInterrupted {
      ExternalScorer.end(process)
      throw InterruptedBeforeRecording(signal: InterruptFlag.signal)  // no run row exists yet
    } catch {
      ExternalScorer.end(process)
      throw error
    }
    guard let hello = ExternalScorer.parseHello(line) else {
      ExternalScorer.end(process)
      throw UserFacingError(
        "outside scorer '\(visible(Secrets.redacted(command)))' began with '\(visible(String(line.prefix(120))))', not a hello line \(ExternalScorer.helloForms) (docs/SCORER_PROTOCOL.md)")
    }
    guard hello.inputSize == expectedSize else {
      ExternalScorer.end(process)
      throw UserFacingError(
        "outside scorer '\(visible(Secrets.redacted(command)))' takes \(hello.inputSize)x\(hello.inputSize) images, the experiment's model.inputSize is \(expectedSize): set --set model.inputSize=\(hello.inputSize)")
    }
    self.hello = hello
  }

  deinit { finish() }

  package static let defaultTimeout: Double = {
    ProcessInfo.processInfo.environment["ONESHOT_SCORER_TIMEOUT"].flatMap(Double.init).flatMap { $0 > 0 && $0.isFinite ? $0 : nil } ?? 300
  }()

  /// `oneshot-scorer 1 input=105 output=scores model=sha256:...`: key=value words after the
  /// protocol name and version, in any order. Version 2 adds `output=episodes` and
  /// `transductive=yes|no` (episodes only).
  static func parseHello(_ line: String) -> Hello? {
    let words = line.split(separator: " ").map(String.init)
    guard words.count >= 3, words[0] == "oneshot-scorer", let version = Int(words[1]), version == 1 || version == 2 else { return nil }
    var values: [String: String] = [:]
    for word in words.dropFirst(2) {
      guard let eq = word.firstIndex(of: "=") else { return nil }
      values[String(word[..<eq])] = String(word[word.index(after: eq)...])
    }
    guard let size = values["input"].flatMap(Int.init), (8...512).contains(size), let output = values["output"].flatMap(Hello.Output.init(rawValue:)),
      let model = values["model"], !model.isEmpty, model.count <= 200
    else { return nil }
    let distance = values["distance"].flatMap(Hello.Distance.init(rawValue:))
    if output == .embeddings && distance == nil { return nil }
    if output == .episodes && version < 2 { return nil }
    var transductive = false
    if let value = values["transductive"] {
      guard version >= 2, output == .episodes, value == "yes" || value == "no" else { return nil }
      transductive = value == "yes"
    }
    return Hello(version: version, inputSize: size, output: output, distance: distance, model: model, transductive: transductive)
  }

  /// Ends the scorer: closes its input (a scorer ends at end of input), waits up to 5 s, then
  /// terminates it.
  package func finish(grace: Double = 5) {
    guard !ended else { return }
    ended = true
    // A request the scorer stopped reading is abandoned.
    writes.cancelled = true
    writing.wait()
    try? input.close()
    ExternalScorer.end(process, grace: grace)
  }

  static func end(_ process: Process, grace: Double = 0) {
    let deadline = Date().addingTimeInterval(grace)
    while process.isRunning && Date() < deadline { usleep(20_000) }
    // The scorer runs in a process group of its own (Foundation starts it as the group's
    // leader): a process it started in the background (`sleep 1007 &`) outlives it in that
    // group, holding its output open, and is ended with it (issue #45, cause B).
    let group = process.processIdentifier
    guard process.isRunning else {
      endGroup(group)
      return process.waitUntilExit()
    }
    // The shell's children too (`sh -c 'python3 scorer.py'` may fork python rather than exec it).
    let tree = descendants(of: process.processIdentifier)
    process.terminate()
    for pid in tree { kill(pid, SIGTERM) }
    let killAt = Date().addingTimeInterval(2)
    while process.isRunning && Date() < killAt { usleep(20_000) }
    if process.isRunning { kill(process.processIdentifier, SIGKILL) }
    for pid in tree where kill(pid, 0) == 0 { kill(pid, SIGKILL) }
    endGroup(group)
    process.waitUntilExit()
  }

  /// Whether the scorer's process has ended: gone, or a zombie not yet reaped. (Foundation's
  /// `isRunning` changes only when its own reaping has run, which a thread blocked here in
  /// `poll` does not wait for.)
  static func hasExited(_ process: Process) -> Bool {
    guard process.isRunning else { return true }
    guard let stat = try? String(contentsOfFile: "/proc/\(process.processIdentifier)/stat", encoding: .utf8) else { return kill(process.processIdentifier, 0) != 0 }
    // pid (comm) STATE ...: the state follows the last ')'.
    guard let close = stat.lastIndex(of: ")") else { return false }
    let state = stat[stat.index(after: close)...].trimmingCharacters(in: .whitespaces).first
    return state == "Z" || state == "X"
  }

  /// SIGTERM to what is left of the scorer's process group, SIGKILL 1 s later to what is left.
  static func endGroup(_ group: Int32) {
    guard group > 1, kill(-group, 0) == 0 else { return }
    kill(-group, SIGTERM)
    let killAt = Date().addingTimeInterval(1)
    while kill(-group, 0) == 0 && Date() < killAt { usleep(20_000) }
    if kill(-group, 0) == 0 { kill(-group, SIGKILL) }
  }

  /// The processes below `pid`, from /proc (Linux); empty where /proc does not say.
  static func descendants(of pid: Int32) -> [Int32] {
    let tasks = "/proc/\(pid)/task"
    let children = ((try? FileManager.default.contentsOfDirectory(atPath: tasks)) ?? []).flatMap { task in
      ((try? String(contentsOfFile: "\(tasks)/\(task)/children", encoding: .utf8)) ?? "").split(separator: " ").compactMap { Int32($0) }
    }
    return children + children.flatMap { descendants(of: $0) }
  }

  /// The error for a failure of the scorer; the child is ended first.
  private func failure(_ what: String) -> UserFacingError {
    finish(grace: 0.2)
    return UserFacingError("outside scorer '\(visible(Secrets.redacted(command)))': \(what); the scorer was stopped")
  }

  /// Writes a request on a thread of its own while the caller reads the answer: a scorer may
  /// answer the first images before it reads the last, and with both pipes full neither side
  /// would move. The previous request's write is finished (and its error reported) first.
  private func send(_ text: String) throws {
    try finishSending()
    let data = Data(text.utf8), fd = self.inputDescriptor, writes = self.writes, writing = self.writing
    writing.enter()
    DispatchQueue.global().async {
      // Non-blocking writes, so that a scorer that stops reading cannot hold this thread (and
      // the harness) past `finish`.
      data.withUnsafeBytes { raw in
        var offset = 0
        while offset < raw.count && !writes.cancelled {
          var poller = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
          guard poll(&poller, 1, 100) > 0 else { continue }
          let n = write(fd, raw.baseAddress! + offset, raw.count - offset)
          if n > 0 {
            offset += n
          } else if n < 0 && errno != EAGAIN && errno != EINTR {
            writes.failed = true
            break
          }
        }
      }
      writing.leave()
    }
  }

  private func finishSending() throws {
    writing.wait()
    if writes.failed {
      writes.failed = false
      throw failure("it stopped reading its input (it exited\(process.isRunning ? "" : " with status \(process.terminationStatus)"))")
    }
  }

  /// Whether the last write failed (set on the writing thread, read after `writing` is done).
  private final class WriteState: @unchecked Sendable {
    var failed = false
    var cancelled = false
  }
  private let writes = WriteState()
  private let writing = DispatchGroup()

  private func receive(_ what: String) throws -> String {
    do {
      return try ExternalScorer.readLine(from: output, buffer: &buffer, timeout: timeout, process: process, command: command, waitingFor: what)
    } catch {
      finish(grace: 0.2)
      throw error
    }
  }

  /// Reads one line within `timeout` seconds; EOF (the scorer died) and the timeout are errors.
  static func readLine(from fd: Int32, buffer: inout [UInt8], timeout: Double, process: Process, command: String, waitingFor what: String) throws -> String {
    let deadline = Date().addingTimeInterval(timeout)
    var chunk = [UInt8](repeating: 0, count: 1 << 16)
    // Where the search for the line's end goes on: each byte is looked at once, so a line of
    // many chunks is read in linear time (a 50 MB hello took 27 s when each chunk restarted the
    // search from the line's start).
    var searched = 0
    while true {
      // SIGINT or SIGTERM act at once, not when the timeout runs out: the run ends interrupted
      // (issue #45, cause C).
      if InterruptFlag.requested { throw EvaluationInterrupted() }
      if let newline = buffer[searched...].firstIndex(of: 10) {
        let line = String(decoding: buffer[..<newline], as: UTF8.self)
        buffer.removeSubrange(...newline)
        return line.hasSuffix("\r") ? String(line.dropLast()) : line
      }
      searched = buffer.count
      guard buffer.count <= 256 << 20 else { throw UserFacingError("outside scorer '\(visible(Secrets.redacted(command)))': a line of over 256 MB while waiting for \(what); the scorer was stopped") }
      let left = deadline.timeIntervalSinceNow
      guard left > 0 else {
        throw UserFacingError(
          "outside scorer '\(visible(Secrets.redacted(command)))': no answer within \(Int(timeout)) s while waiting for \(what) (ONESHOT_SCORER_TIMEOUT sets the limit); the scorer was stopped")
      }
      var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
      let ready = poll(&poller, 1, Int32(min(left, 0.2) * 1000))
      if ready == 0 && hasExited(process) {
        // It exited, yet its output is still open: a process it started holds it. Foundation
        // notices an exit only when every copy of a socket it gave the child is closed, and that
        // process holds one too: it is ended first, then the exit is read.
        endGroup(process.processIdentifier)
        process.waitUntilExit()
        throw UserFacingError(
          "outside scorer '\(visible(Secrets.redacted(command)))' exited with status \(process.terminationStatus) while the harness waited for \(what), leaving a process it started holding its output; the scorer and that process were stopped")
      }
      if ready == 0 || (ready < 0 && errno == EINTR) { continue }
      let count = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
      if count < 0 && errno == EINTR { continue }
      guard count > 0 else {
        // End of its output. A scorer that closed it and lives on is not waited for.
        let exitBy = Date().addingTimeInterval(2)
        while !hasExited(process) && Date() < exitBy { usleep(20_000) }
        guard hasExited(process) else {
          throw UserFacingError("outside scorer '\(visible(Secrets.redacted(command)))' closed its output while the harness waited for \(what) and kept running; the scorer was stopped")
        }
        process.waitUntilExit()
        let how = process.terminationReason == .uncaughtSignal ? "was killed by signal \(process.terminationStatus)" : "exited with status \(process.terminationStatus)"
        throw UserFacingError("outside scorer '\(visible(Secrets.redacted(command)))' \(how) while the harness waited for \(what); see its messages above")
      }
      buffer += chunk[0..<count]
    }
  }

  // MARK: OneShotScorer

  /// Images go to an outside scorer in a random order: in the store's order, an image's number
  /// would tell its class (a scorer whose embedding is the number scored 87.78% on 20-way
  /// 1-shot without reading a pixel; issue #45, cause D).
  package var shufflesImageOrder: Bool { true }

  package func embed(_ pixels: UnsafeBufferPointer<UInt8>, count: Int, size: Int) throws -> [Embedding] {
    precondition(size == hello.inputSize, "images are \(size)x\(size), the scorer takes \(hello.inputSize)")
    let n = size * size
    let first = sent
    sent += count
    if hello.output == .episodes {
      // Nothing is asked now: each episode carries its images.
      return (0..<count).map { Embedding(index: first + $0, vector: [], pixels: Array(pixels[($0 * n)..<(($0 + 1) * n)])) }
    }
    var text = "embed \(count)\n"
    text.reserveCapacity(count * (n * 4 / 3 + 8) + 16)
    for i in 0..<count { text += Data(UnsafeBufferPointer(rebasing: pixels[(i * n)..<((i + 1) * n)])).base64EncodedString() + "\n" }
    try send(text)
    switch hello.output {
    case .episodes:
      preconditionFailure("answered above")
    case .scores:
      let reply = try receive("the reply to 'embed \(count)'")
      try finishSending()
      guard reply == "ok" else { throw failure("answered 'embed \(count)' with '\(visible(String(reply.prefix(80))))', not 'ok'") }
      return (0..<count).map { Embedding(index: first + $0, vector: []) }
    case .embeddings:
      var out: [Embedding] = []
      out.reserveCapacity(count)
      for i in 0..<count {
        let line = try answer("embedding \(i + 1) of \(count)")
        if line == "done" { throw failure("wrote \(i) embeddings for \(count) images") }
        guard let vector = ExternalScorer.parseEmbedding(line) else {
          throw failure("embedding \(i + 1) of \(count) is not base64 of little-endian float32 values: '\(visible(String(line.prefix(80))))'")
        }
        if let width, vector.count != width { throw failure("embedding \(i + 1) has \(vector.count) values, the first had \(width)") }
        guard vector.allSatisfy(\.isFinite) else { throw failure("embedding \(i + 1) of \(count) holds NaN or infinity") }
        width = vector.count
        out.append(Embedding(index: first + i, vector: vector))
      }
      try expectDone(after: "\(count) embeddings")
      try finishSending()
      return out
    }
  }

  /// An embedding line: base64 of little-endian float32 values (at least one); nil otherwise.
  static func parseEmbedding(_ line: String) -> [Float]? {
    guard let data = Data(base64Encoded: line), data.count % 4 == 0, !data.isEmpty else { return nil }
    return data.withUnsafeBytes { raw in (0..<(data.count / 4)).map { Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: $0 * 4, as: UInt32.self))) } }
  }

  /// A line of class scores (version 2): `ways` finite numbers separated by spaces or tabs, in
  /// the order of the labels sent; what is wrong with it otherwise, in words.
  static func parseClassScores(_ line: String, ways: Int) -> Result<[Double], ClassScoresProblem> {
    let words = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
    guard words.count == ways else { return .failure(.count(words.count)) }
    var row = [Double](repeating: 0, count: ways)
    for (i, word) in words.enumerated() {
      guard let value = Double(word) else { return .failure(.notANumber(String(word.prefix(40)))) }
      guard value.isFinite else { return .failure(.notFinite(value)) }
      row[i] = value
    }
    return .success(row)
  }

  enum ClassScoresProblem: Error {
    case count(Int)
    case notANumber(String)
    case notFinite(Double)
  }

  /// Every reply ends with a line `done`, so that a reply with too many values is caught.
  private func expectDone(after what: String) throws {
    let line = try answer("'done' after \(what)")
    guard line == "done" else { throw failure("wrote more than \(what) (a reply ends with a line 'done')") }
  }

  /// A line of an answer; a line `error TEXT` ends the run with the scorer's own words.
  private func answer(_ what: String) throws -> String {
    let line = try receive(what)
    if line.hasPrefix("error ") || line == "error" {
      throw failure("it reported an error while the harness waited for \(what): \(visible(Secrets.redacted(String(line.dropFirst(5).trimmingCharacters(in: .whitespaces).prefix(300)))))")
    }
    return line
  }

  /// Order for what is sent: fresh from the system's generator, so that no order a scorer sees
  /// can be learned from the harness's code.
  private var shuffler = SystemRandomNumberGenerator()

  package func similarities(queries: [Embedding], support: [Embedding]) throws -> [[Double]] {
    switch hello.output {
    case .scores:
      // The pairs in a random order: laid out query by query and class by class, the position of
      // a pair would tell which support image shares the query's class.
      var pairs = [(q: Int, s: Int)]()
      pairs.reserveCapacity(queries.count * support.count)
      for q in queries.indices { for s in support.indices { pairs.append((q, s)) } }
      pairs.shuffle(using: &shuffler)
      var text = "score \(pairs.count)\n"
      for pair in pairs { text += "\(queries[pair.q].index) \(support[pair.s].index)\n" }
      try send(text)
      var out = [[Double]](repeating: [Double](repeating: 0, count: support.count), count: queries.count)
      for (i, pair) in pairs.enumerated() {
        let line = try answer("score \(i + 1) of \(pairs.count)")
        if line == "done" { throw failure("wrote \(i) scores for \(pairs.count) pairs") }
        guard let value = Double(line.trimmingCharacters(in: .whitespaces)) else { throw failure("score line '\(visible(String(line.prefix(80))))' is not a number") }
        guard value.isFinite else { throw failure("a score is \(value) (NaN or infinity)") }
        out[pair.q][pair.s] = value
      }
      try expectDone(after: "\(pairs.count) scores")
      try finishSending()
      return out
    case .embeddings:
      return queries.map { q in support.map { s in similarity(q.vector, s.vector) } }
    case .episodes:
      // A scorer of episodes scores classes, not pairs: each support image is made a class of
      // its own, and the scorer's class scores are the pairs' similarities.
      return try classScores(queries: queries, support: support.map { [$0] })
    }
  }

  /// One episode, whole (version 2): `episode WAYS SUPPORT QUERIES`, the support images as
  /// `LABEL BASE64` lines, the queries as `BASE64` lines; the answer is one line of WAYS scores
  /// per query, in the order sent, then `done`. The classes are relabeled by a random
  /// permutation, and the support images and the queries are each sent in a random order.
  func episodeScores(queries: [Embedding], support: [[Embedding]]) throws -> [[Double]] {
    let ways = support.count
    let relabel = Array(0..<ways).shuffled(using: &shuffler)  // relabel[c]: the label class c is sent as
    var shots = [(c: Int, image: Embedding)]()
    for (c, images) in support.enumerated() { for image in images { shots.append((c, image)) } }
    shots.shuffle(using: &shuffler)
    let sentQueries = Array(queries.indices).shuffled(using: &shuffler)  // sentQueries[i]: the query sent i-th
    var text = "episode \(ways) \(shots.count) \(queries.count)\n"
    text.reserveCapacity((shots.count + queries.count) * ((hello.inputSize * hello.inputSize * 4) / 3 + 12))
    for shot in shots { text += "\(relabel[shot.c]) " + Data(shot.image.pixels).base64EncodedString() + "\n" }
    for q in sentQueries { text += Data(queries[q].pixels).base64EncodedString() + "\n" }
    try send(text)
    var out = [[Double]](repeating: [], count: queries.count)
    for (i, q) in sentQueries.enumerated() {
      let line = try answer("the class scores of query \(i + 1) of \(queries.count)")
      if line == "done" { throw failure("wrote class scores for \(i) of an episode's \(queries.count) queries") }
      switch ExternalScorer.parseClassScores(line, ways: ways) {
      case .success(let sent):
        out[q] = (0..<ways).map { sent[relabel[$0]] }  // back to the harness's classes
      case .failure(.count(let n)):
        throw failure("wrote \(n) scores for query \(i + 1) of an episode of \(ways) classes (one line of \(ways) numbers per query): '\(visible(String(line.prefix(80))))'")
      case .failure(.notANumber(let word)):
        throw failure("class score '\(visible(word))' of query \(i + 1) is not a number")
      case .failure(.notFinite(let value)):
        throw failure("a class score of query \(i + 1) is \(value) (NaN or infinity)")
      }
    }
    try expectDone(after: "the class scores of \(queries.count) queries")
    try finishSending()
    return out
  }

  /// Cosine similarity, or under Euclidean the class's prototype distance (as a prototypical
  /// network is scored); the mean similarity over a class's support images otherwise.
  package func classScores(queries: [Embedding], support: [[Embedding]]) throws -> [[Double]] {
    if hello.output == .episodes { return try episodeScores(queries: queries, support: support) }
    if hello.output == .embeddings && hello.distance == .euclidean {
      return PrototypicalLoss.scores(queries: queries.map(\.vector), support: support.map { $0.map(\.vector) })
    }
    return meanPerClass(try similarities(queries: queries, support: support.flatMap { $0 }), classSizes: support.map(\.count))
  }

  func similarity(_ a: [Float], _ b: [Float]) -> Double {
    precondition(a.count == b.count)
    var dot = 0.0, na = 0.0, nb = 0.0
    for i in a.indices {
      dot += Double(a[i]) * Double(b[i])
      na += Double(a[i]) * Double(a[i])
      nb += Double(b[i]) * Double(b[i])
    }
    return dot / max((na * nb).squareRoot(), 1e-30)
  }
}

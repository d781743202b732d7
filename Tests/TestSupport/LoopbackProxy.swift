import Foundation

#if canImport(Glibc)
  import Glibc
#endif

/// A TCP proxy on 127.0.0.1 in front of a server on loopback (the tests' PostgreSQL), which
/// injects the faults of a network between them:
/// - `loseReply(to:after:)`: a request reaches the server and the server acts on it (a COMMIT
///   commits), but its reply never arrives: the proxy reads the reply, drops it and closes the
///   connection, as a cable pulled at the wrong moment would;
/// - `stall(seconds:)`: nothing passes in either direction for a while (a stalled network or a
///   stopped peer), then everything flows again.
/// Connect through it with `url(replacingPortOf:)`.
public final class LoopbackProxy: @unchecked Sendable {
  /// The proxy's port on 127.0.0.1.
  public let port: UInt16
  private let upstreamPort: UInt16
  private let listener: Int32
  private let lock = NSLock()
  private var loss: (prerequisite: [UInt8]?, trigger: [UInt8], remaining: Int)?
  private var stalledUntil = Date.distantPast
  private var lost = 0
  private var sockets: Set<Int32> = []
  private var closed = false

  /// A proxy to `upstreamPort` on 127.0.0.1, accepting at once.
  public init(upstreamPort: UInt16) throws {
    self.upstreamPort = upstreamPort
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw ProxyError("socket: errno \(errno)") }
    var address = LoopbackProxy.loopback(port: 0)
    let bound = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
    guard bound == 0, listen(fd, 64) == 0 else {
      Glibc.close(fd)
      throw ProxyError("bind/listen: errno \(errno)")
    }
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
    listener = fd
    port = UInt16(bigEndian: address.sin_port)
    Thread.detachNewThread { [self] in acceptLoop() }
  }

  deinit { close() }

  /// `url` (postgresql://user@host:PORT/db...) with its port replaced by the proxy's.
  public func url(replacingPortOf url: String) -> String {
    url.replacingOccurrences(of: #":\d+/"#, with: ":\(port)/", options: .regularExpression)
  }

  /// The next `times` requests containing `trigger` (on a connection that earlier sent
  /// `prerequisite`, when given) reach the server, whose replies are then lost with the connection.
  public func loseReply(to trigger: String, after prerequisite: String? = nil, times: Int = 1) {
    lock.withLock { loss = (prerequisite.map { Array($0.utf8) }, Array(trigger.utf8), times) }
  }

  /// Nothing passes for `seconds` from now.
  public func stall(seconds: Double) {
    lock.withLock { stalledUntil = Date().addingTimeInterval(seconds) }
  }

  /// Replies lost so far.
  public var lostReplies: Int { lock.withLock { lost } }

  /// Stops accepting and ends every connection.
  public func close() {
    let open: Set<Int32> = lock.withLock {
      guard !closed else { return [] }
      closed = true
      return sockets
    }
    shutdown(listener, Int32(SHUT_RDWR))
    for fd in open { shutdown(fd, Int32(SHUT_RDWR)) }
  }

  private static func loopback(port: UInt16) -> sockaddr_in {
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = port.bigEndian
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    return address
  }

  private func acceptLoop() {
    while true {
      let client = accept(listener, nil, nil)
      guard client >= 0 else {
        if errno == EINTR { continue }
        Glibc.close(listener)
        return
      }
      let server = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
      var address = LoopbackProxy.loopback(port: upstreamPort)
      let connected = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(server, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
      guard server >= 0, connected == 0 else {
        Glibc.close(client)
        if server >= 0 { Glibc.close(server) }
        continue
      }
      let connection = Connection(client: client, server: server)
      lock.withLock { sockets.formUnion([client, server]) }
      Thread.detachNewThread { [self] in pump(connection, towardsServer: true) }
      Thread.detachNewThread { [self] in pump(connection, towardsServer: false) }
    }
  }

  /// One proxied connection's state, shared by its two pumps.
  private final class Connection: @unchecked Sendable {
    let client: Int32, server: Int32
    var sawPrerequisite = false
    var tail: [UInt8] = []
    var dropNextReply = false
    var pumps = 2
    init(client: Int32, server: Int32) { (self.client, self.server) = (client, server) }
  }

  private func pump(_ connection: Connection, towardsServer: Bool) {
    let (from, to) = towardsServer ? (connection.client, connection.server) : (connection.server, connection.client)
    var buffer = [UInt8](repeating: 0, count: 65_536)
    while true {
      let count = buffer.withUnsafeMutableBytes { read(from, $0.baseAddress, $0.count) }
      if count < 0 && errno == EINTR { continue }
      guard count > 0 else { break }
      while lock.withLock({ Date() < stalledUntil && !closed }) { usleep(10_000) }
      let chunk = Array(buffer[0..<count])
      if towardsServer {
        lock.withLock {
          guard let rule = loss, rule.remaining > 0 else { return }
          let seen = connection.tail + chunk
          connection.tail = Array(seen.suffix(max(rule.trigger.count, rule.prerequisite?.count ?? 0)))
          if let prerequisite = rule.prerequisite, !connection.sawPrerequisite, LoopbackProxy.contains(seen, prerequisite) { connection.sawPrerequisite = true }
          if (rule.prerequisite == nil || connection.sawPrerequisite) && LoopbackProxy.contains(seen, rule.trigger) {
            connection.dropNextReply = true
            loss = (rule.prerequisite, rule.trigger, rule.remaining - 1)
          }
        }
      } else if lock.withLock({ () -> Bool in
        guard connection.dropNextReply else { return false }
        lost += 1
        return true
      }) {
        break  // the reply is read and dropped, and the connection goes with it
      }
      guard writeAll(to, chunk) else { break }
    }
    shutdown(connection.client, Int32(SHUT_RDWR))
    shutdown(connection.server, Int32(SHUT_RDWR))
    let last = lock.withLock { () -> Bool in
      connection.pumps -= 1
      guard connection.pumps == 0 else { return false }
      sockets.subtract([connection.client, connection.server])
      return true
    }
    if last {
      Glibc.close(connection.client)
      Glibc.close(connection.server)
    }
  }

  private func writeAll(_ fd: Int32, _ bytes: [UInt8]) -> Bool {
    var offset = 0
    while offset < bytes.count {
      // send with MSG_NOSIGNAL: a peer gone must not raise SIGPIPE in the test process.
      let written = bytes.withUnsafeBytes { send(fd, $0.baseAddress! + offset, bytes.count - offset, Int32(MSG_NOSIGNAL)) }
      if written < 0 && errno == EINTR { continue }
      guard written > 0 else { return false }
      offset += written
    }
    return true
  }

  private static func contains(_ haystack: [UInt8], _ needle: [UInt8]) -> Bool {
    guard !needle.isEmpty, haystack.count >= needle.count else { return needle.isEmpty }
    for start in 0...(haystack.count - needle.count) where haystack[start] == needle[0] {
      if haystack[start..<(start + needle.count)].elementsEqual(needle) { return true }
    }
    return false
  }
}

/// The proxy could not start.
public struct ProxyError: Error, CustomStringConvertible {
  public let description: String
  init(_ description: String) { self.description = description }
}

import Foundation
import ResultsStore
import Reports
import Support

/// Progress on standard error: one updating line on a terminal, a plain line every few
/// seconds otherwise (logs, CI).
/// Thread-safe: a heartbeat (`whileWorking`) updates it from a thread of its own.
package final class ProgressDisplay: @unchecked Sendable {
  package let isTerminal = isatty(STDERR_FILENO) != 0
  private var lastPrint = Date.distantPast
  /// When anything was last shown, lines included (the heartbeat's clock; `lastPrint` paces updates).
  private var lastShown = Date.distantPast
  private var pendingLine = false
  private let lock = NSRecursiveLock()
  /// Seconds between plain lines when not on a terminal.
  package var plainInterval: TimeInterval = 10

  package init() {}

  /// Shows `text`; `force` prints even when the last update was recent.
  package func update(_ text: String, force: Bool = false) {
    lock.lock()
    defer { lock.unlock() }
    let now = Date()
    if isTerminal {
      guard force || now.timeIntervalSince(lastPrint) >= 0.2 else { return }
      StandardError.write("\r\u{1B}[K\(Secrets.redacted(text))")
      pendingLine = true
    } else {
      guard force || now.timeIntervalSince(lastPrint) >= plainInterval else { return }
      StandardError.write("\(Secrets.redacted(text))\n")
    }
    lastPrint = now
  }

  /// Seconds since anything was last shown.
  package var secondsSinceLastPrint: TimeInterval {
    lock.lock()
    defer { lock.unlock() }
    return Date().timeIntervalSince(max(lastPrint, lastShown))
  }

  /// Shows `text` on a terminal's live line only (a phase too short to log, e.g. reading data).
  package func transient(_ text: String) {
    guard isTerminal else { return }
    update(text, force: true)
  }

  /// Prints a line of its own (ending any updating line first).
  package func line(_ text: String) {
    lock.lock()
    defer { lock.unlock() }
    finish()
    StandardError.write("\(Secrets.redacted(text))\n")
    lastShown = Date()
  }

  /// Ends the updating line.
  package func finish() {
    lock.lock()
    defer { lock.unlock() }
    if pendingLine {
      StandardError.write("\n")
      pendingLine = false
    }
  }
}
/// What a long phase is doing now, for `ProgressDisplay.whileWorking`; set from the working thread.
package final class WorkStatus: @unchecked Sendable {
  private let lock = NSLock()
  private var current: String
  private var since = Date()

  package init(_ text: String) { current = text }

  /// The phase's new state (its clock restarts).
  package var text: String {
    get { lock.withLock { current } }
    set { lock.withLock { current = newValue; since = Date() } }
  }

  /// The state with the seconds spent in it: `timing fp32 step 2 of 4, 12 s`.
  package var shown: String { lock.withLock { "\(current), \(Int(Date().timeIntervalSince(since))) s" } }

  /// Seconds since the state last changed.
  package var age: TimeInterval { lock.withLock { Date().timeIntervalSince(since) } }
}

extension ProgressDisplay {
  /// Runs `body` (which may block for minutes in one call, a probe step of a large network on a
  /// slow CPU) while a thread of its own shows `status` every second on a terminal, and every
  /// `plainInterval` seconds otherwise, so that no phase is silent.
  package func whileWorking<T>(_ status: WorkStatus, _ body: () throws -> T) rethrows -> T {
    let done = DoneFlag(), exited = DispatchSemaphore(value: 0)
    let interval = isTerminal ? 3.0 : plainInterval
    let thread = Thread { [self] in
      defer { exited.signal() }
      var acknowledged = false
      while !done.isSet {
        Thread.sleep(forTimeInterval: 0.1)
        if done.isSet { break }
        if InterruptFlag.requested && !acknowledged {
          acknowledged = true
          line("\(InterruptFlag.signal == SIGINT ? "Ctrl-C" : "signal \(InterruptFlag.signal)") received: stopping at the end of this step; what is recorded stays, and the run can be resumed")
        }
        if ProgressDisplay.heartbeatDue(quiet: secondsSinceLastPrint, statusAge: status.age, interval: interval) { update(status.shown, force: true) }
      }
    }
    thread.start()
    defer {
      done.set()
      exited.wait()  // no heartbeat line after the phase's own last line
    }
    return try body()
  }
}

extension ProgressDisplay {
  /// Whether the heartbeat speaks: nothing shown for `interval` seconds and the phase stuck in
  /// one state as long. A progress line that is merely due (its own pace is `plainInterval`
  /// too) is not silence: without the second condition a log got "(next step running), 0 s"
  /// beside every tenth-second progress line.
  package static func heartbeatDue(quiet: TimeInterval, statusAge: TimeInterval, interval: TimeInterval) -> Bool {
    quiet >= interval && statusAge >= interval
  }
}

/// A flag one thread sets and another reads.
private final class DoneFlag: @unchecked Sendable {
  private let lock = NSLock()
  private var value = false
  var isSet: Bool { lock.withLock { value } }
  func set() { lock.withLock { value = true } }
}

/// Rate and time left of one phase of counted work (images embedded, episodes scored), for a
/// progress line: `611/1000 episodes, 23.4/s, 17s left`. The time left is said only once the
/// phase has run a second and done a twentieth of its work; before that it says "measuring"; at the
/// end it gives the phase's time.
package struct PhaseRate {
  private let start = Date()

  package init() {}

  package func text(done: Int, total: Int, unit: String) -> String {
    let elapsed = Date().timeIntervalSince(start)
    if done >= total { return "\(done)/\(total) \(unit) in \(String(format: "%.1f", elapsed)) s" }
    guard elapsed >= 1, done * 20 >= total, done > 0 else { return "\(done)/\(total) \(unit), measuring" }
    let rate = Double(done) / elapsed
    let left = Double(total - done) / rate
    return "\(done)/\(total) \(unit), \(String(format: rate >= 10 ? "%.0f" : "%.1f", rate))/s, \(formatDuration(left)) left"
  }
}

/// SIGINT and SIGTERM set a flag that the training loop checks between steps, so a run can
/// save a checkpoint and be marked interrupted instead of dying mid-write.
package enum InterruptFlag {
  package nonisolated(unsafe) static var signal: Int32 = 0

  package static func install() {
    let handler: @convention(c) (Int32) -> Void = { InterruptFlag.signal = $0 }
    Foundation.signal(SIGINT, handler)
    Foundation.signal(SIGTERM, handler)
    // A wait for an absent store server ends at once on either signal.
    StoreOutage.stopSignal = { InterruptFlag.signal }
  }

  package static var requested: Bool { signal != 0 }
}

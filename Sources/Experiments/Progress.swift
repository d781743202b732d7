import Foundation
import Reports
import Support

/// Progress on standard error: one updating line on a terminal, a plain line every few
/// seconds otherwise (logs, CI).
package final class ProgressDisplay {
  package let isTerminal = isatty(STDERR_FILENO) != 0
  private var lastPrint = Date.distantPast
  private var pendingLine = false
  /// Seconds between plain lines when not on a terminal.
  package var plainInterval: TimeInterval = 10

  /// Shows `text`; `force` prints even when the last update was recent.
  package func update(_ text: String, force: Bool = false) {
    let now = Date()
    if isTerminal {
      guard force || now.timeIntervalSince(lastPrint) >= 0.2 else { return }
      FileHandle.standardError.write(Data("\r\u{1B}[K\(Secrets.redacted(text))".utf8))
      pendingLine = true
    } else {
      guard force || now.timeIntervalSince(lastPrint) >= plainInterval else { return }
      FileHandle.standardError.write(Data("\(Secrets.redacted(text))\n".utf8))
    }
    lastPrint = now
  }

  /// Shows `text` on a terminal's live line only (a phase too short to log, e.g. reading data).
  package func transient(_ text: String) {
    guard isTerminal else { return }
    update(text, force: true)
  }

  /// Prints a line of its own (ending any updating line first).
  package func line(_ text: String) {
    finish()
    FileHandle.standardError.write(Data("\(Secrets.redacted(text))\n".utf8))
  }

  /// Ends the updating line.
  package func finish() {
    if pendingLine {
      FileHandle.standardError.write(Data("\n".utf8))
      pendingLine = false
    }
  }
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
  }

  package static var requested: Bool { signal != 0 }
}

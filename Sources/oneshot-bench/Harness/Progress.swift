import Foundation

/// Progress on standard error: one updating line on a terminal, a plain line every few
/// seconds otherwise (logs, CI).
final class ProgressDisplay {
  let isTerminal = isatty(STDERR_FILENO) != 0
  private var lastPrint = Date.distantPast
  private var pendingLine = false
  /// Seconds between plain lines when not on a terminal.
  var plainInterval: TimeInterval = 10

  /// Shows `text`; `force` prints even when the last update was recent.
  func update(_ text: String, force: Bool = false) {
    let now = Date()
    if isTerminal {
      guard force || now.timeIntervalSince(lastPrint) >= 0.2 else { return }
      FileHandle.standardError.write(Data("\r\u{1B}[K\(text)".utf8))
      pendingLine = true
    } else {
      guard force || now.timeIntervalSince(lastPrint) >= plainInterval else { return }
      FileHandle.standardError.write(Data("\(text)\n".utf8))
    }
    lastPrint = now
  }

  /// Prints a line of its own (ending any updating line first).
  func line(_ text: String) {
    finish()
    FileHandle.standardError.write(Data("\(text)\n".utf8))
  }

  /// Ends the updating line.
  func finish() {
    if pendingLine {
      FileHandle.standardError.write(Data("\n".utf8))
      pendingLine = false
    }
  }
}
/// SIGINT and SIGTERM set a flag that the training loop checks between steps, so a run can
/// save a checkpoint and be marked interrupted instead of dying mid-write.
enum InterruptFlag {
  nonisolated(unsafe) static var signal: Int32 = 0

  static func install() {
    let handler: @convention(c) (Int32) -> Void = { InterruptFlag.signal = $0 }
    Foundation.signal(SIGINT, handler)
    Foundation.signal(SIGTERM, handler)
  }

  static var requested: Bool { signal != 0 }
}

import Foundation

/// Writes to standard error that never stop the harness: when whoever reads it is gone (a
/// `2>&1 | head -3` that exited, a closed terminal), the text is dropped and the run goes on.
/// `FileHandle.write` traps on EPIPE once SIGPIPE is ignored (the outside scorer ignores it so
/// that a dead scorer's pipe is an error to report); without that, SIGPIPE would kill the
/// process (exit 141) and leave its run `running`. Issue #45, cause W.
public enum StandardError {
  public static func write(_ text: String) {
    var bytes = Array(text.utf8)
    var offset = 0
    while offset < bytes.count {
      let written = bytes.withUnsafeMutableBytes { Foundation.write(STDERR_FILENO, $0.baseAddress! + offset, $0.count - offset) }
      if written > 0 {
        offset += written
      } else if written < 0 && errno == EINTR {
        continue
      } else {
        return  // EPIPE, EBADF, a full disk: nothing to do but go on
      }
    }
  }

  /// Ignores SIGPIPE for the whole process: a closed standard error or output is then a failed
  /// write (dropped here, and by `print`), not a kill that leaves a run `running`.
  public static func survivePipeClosing() { signal(SIGPIPE, SIG_IGN) }
}

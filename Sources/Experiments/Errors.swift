import Episodes
import Foundation
import Model
import Reports
import ResultsStore
import Support

/// Errors a user can cause: one line saying what happened and what to do, exit code 2.
package protocol UserCausedError: Error, CustomStringConvertible {}

extension DatasetError: UserCausedError {}
extension StoreError: UserCausedError {}
extension CheckpointError: UserCausedError {}
extension ConfigError: UserCausedError {}
extension ReportError: UserCausedError {}
extension UserFileError: UserCausedError {}
extension OutputFileError: UserCausedError {}

/// An error the user caused, with the message to show them.
package struct UserFacingError: UserCausedError {
  package let description: String
  package init(_ description: String) { self.description = description }

  /// A checkpoint path that names no file.
  package static func checkpointNotFound(_ path: String) -> UserFacingError {
    UserFacingError("checkpoint \(path) not found; pass --checkpoint PATH (a run keeps its best under runs/<run-id>/best.safetensors)")
  }
}

/// Writes `message` to standard error, prefixed with `error: ` (control characters made visible,
/// passwords redacted).
package func printError(_ message: String) {
  StandardError.write("error: \(Secrets.redacted(visible(asInvoked(message))))\n")
}

/// Writes a line to standard error as it is, passwords redacted (progress and notes, not errors).
package func printNote(_ message: String) {
  StandardError.write("\(Secrets.redacted(asInvoked(message)))\n")
}

/// How the user started this binary, when that is a path (`.build/release/oneshot-bench`, not
/// on PATH after the README's build), else `oneshot-bench`: the name hints tell the user to type.
package let invokedName: String = {
  guard let typed = CommandLine.arguments.first, typed.contains("/"), URL(fileURLWithPath: typed).lastPathComponent == "oneshot-bench" else { return "oneshot-bench" }
  return typed.contains(" ") ? "'\(typed)'" : typed
}()

/// `message` with every command it suggests (`oneshot-bench run --resume ...`) written as this
/// binary was started, so that a hint can be pasted as it is.
package func asInvoked(_ message: String) -> String {
  guard invokedName != "oneshot-bench" else { return message }
  // A command, not the name in prose ("not a oneshot-bench baseline"): after a backtick, a
  // parenthesis or "Continue with: ", and followed by a subcommand.
  let pattern = #"(?<=`|\(|with: )oneshot-bench (?=(run|report|check|sweep|store|dataset|evaluate|predict|bench|baseline|export|episodes|compare|ensemble) )"#
  return message.replacingOccurrences(of: pattern, with: NSRegularExpression.escapedTemplate(for: invokedName + " "), options: .regularExpression)
}

/// What goes to standard output, from the harness and every command: passwords redacted, and
/// control characters other than line breaks and tabs made visible, so that nothing printed, a
/// name from a folder or a store included, can drive the terminal or hide a line.
package func standardOutput(_ text: String) -> String { visible(Secrets.redacted(text), keepingLayout: true) }

/// Standard output of the harness (`standardOutput`): the module's `print` is this one.
func print(_ items: Any..., separator: String = " ", terminator: String = "\n") {
  Swift.print(standardOutput(items.map { "\($0)" }.joined(separator: separator)), terminator: terminator)
}

/// The harness's version, recorded with every run.
package let harnessVersion = "0.1.0"

/// Where the shipped model lives; `predict`, `evaluate` and `run --eval-only` find it by default.
package let shippedModelPath = "models/omniglot-siamese.safetensors"

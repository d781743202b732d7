import Foundation
import OneshotCLI
import Support

/// `oneshot-bench`: the commands live in the OneshotCLI library (so that tests and the fuzzer's
/// command-line target parse the very same argument vectors); this is only the entry point.
@main
enum Entry {
  static func main() {
    // A reader that went away (`... 2>&1 | head -3`) must not kill a run mid-write.
    StandardError.survivePipeClosing()
    exit(runCommand(CommandLine.arguments.dropFirst().map { $0 }))
  }
}

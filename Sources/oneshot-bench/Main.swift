import Foundation
import OneshotCLI

/// `oneshot-bench`: the commands live in the OneshotCLI library (so that tests and the fuzzer's
/// command-line target parse the very same argument vectors); this is only the entry point.
@main
enum Entry {
  static func main() {
    exit(runCommand(CommandLine.arguments.dropFirst().map { $0 }))
  }
}

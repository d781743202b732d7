import ArgumentParser
import Experiments
import Foundation

/// Feeds `bytes` to `target`'s reader: the command line here, every other reader in Experiments.
/// The fuzzing driver (`scripts/fuzz`) and `swift test`'s replay of the corpus both call this.
@discardableResult
package func fuzzInput(_ target: FuzzTarget, _ bytes: [UInt8]) -> Bool {
  target == .cli ? fuzzCommandLine(bytes) : fuzz(target, bytes)
}

/// An experiment every `--set` of a fuzzed `run` edits, as a user's file would be edited.
private let fuzzExperiment = """
  {"name": "fuzz", "model": {"backbone": "vgg16", "inputSize": 28, "blocks": [[4]]},
   "training": {"steps": 10, "optimizer": {"kind": "adam", "learningRate": 0.001},
                "validation": {"every": 5, "episodes": 2, "spec": {"ways": 5}}},
   "evaluation": [{"protocol": "lake20"}, {"protocol": "episodes", "episodes": 3}]}
  """

/// Parses a NUL-separated argument vector as `oneshot-bench` does (every subcommand, its
/// options' transforms and `validate()`, which hold the bounds), then what a command does with
/// parsed values before touching any file: a run's `--set` assignments edit an experiment and
/// the result is decoded with all its checks; a sweep's `--grid` axes expand. Nothing runs.
/// Returns whether the vector was accepted.
package func fuzzCommandLine(_ bytes: [UInt8]) -> Bool {
  guard bytes.count <= 1 << 16 else { return false }
  let arguments = bytes.split(separator: 0, omittingEmptySubsequences: false).prefix(256).map { String(decoding: $0, as: UTF8.self) }
  guard let command = try? OneshotBench.parseAsRoot(arguments) else { return false }
  if let run = command as? RunExperimentCommand, let assignments = try? run.assignments {
    guard var json = try? JSONSerialization.jsonObject(with: Data(fuzzExperiment.utf8)) else { return false }
    for assignment in assignments {
      guard let edited = try? assignment.apply(to: json) else { return false }
      json = edited
    }
    guard let data = try? JSONSerialization.data(withJSONObject: json) else { return false }
    return (try? ExperimentConfig.decode(data, source: "fuzz")) != nil
  }
  return true
}

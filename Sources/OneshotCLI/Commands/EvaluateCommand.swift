import Experiments
import ArgumentParser
import Foundation
import Model
import Support

/// `oneshot-bench evaluate --folder DIR --ways N`: a checkpoint on N-way K-shot episodes drawn
/// from a folder of your own images, recorded like any run (an eval-only run whose experiment
/// file is made from these options).
struct EvaluateCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "evaluate",
    abstract: "Evaluate a checkpoint on N-way K-shot episodes from a folder of your own images (ROOT/<group>/<class>/*.png) and record the run.")

  @OptionGroup var store: StoreOptions
  @Option(help: "Folder of images: one folder per group, one per class inside it, PNG or JPEG images of any size (dark strokes on light paper).") var folder: String
  @Option(help: "Classes per episode.") var ways: Int
  @Option(help: "Support images per class.") var shots: Int = 1
  @Option(help: "Query images per class.") var queries: Int = 1
  @Option(help: "Episodes to score.") var episodes: Int = 200
  @Option(help: "Seed of the episodes (the same seed draws the same episodes everywhere).") var seed: UInt64 = 0
  @Option(help: "Checkpoint (a network or an ensemble; by default the shipped model).") var checkpoint: String = shippedModelPath
  @Option(help: "Experiment name the run is recorded under (default: folder-<folder name>).") var name: String?
  @Option(help: "Threads.") var threads: Int = 2

  func run() throws {
    guard FileManager.default.fileExists(atPath: checkpoint) else { throw UserFacingError.checkpointNotFound(checkpoint) }
    let model = try Checkpoint.readModel(URL(fileURLWithPath: checkpoint)).model
    let root = URL(fileURLWithPath: folder).standardizedFileURL
    let protocolItem: [String: Any] = [
      "protocol": "episodes", "split": "folder", "path": root.path, "episodes": episodes, "seed": seed,
      "spec": ["ways": ways, "shots": shots, "queries": queries],
    ]
    let experiment: [String: Any] = [
      "name": name ?? "folder-\(root.lastPathComponent)", "description": "\(checkpoint) on \(ways)-way \(shots)-shot episodes of \(root.path) (oneshot-bench evaluate)",
      "threads": threads, "model": try JSONSerialization.jsonObject(with: try JSONEncoder.canonical().encode(model.config)), "evaluation": [protocolItem],
    ]
    let config = try ExperimentConfig.decode(try JSONSerialization.data(withJSONObject: experiment), source: "evaluate")
    try finish(try runExperiment(try RunPlan(evaluating: config, checkpoint: checkpoint, options: RunOptions(storePath: store.path))))
  }
}

import Experiments
import ArgumentParser
import Episodes
import Foundation
import Model
import Support

/// `oneshot-bench ensemble A.safetensors B.safetensors --output FILE`: combines trained
/// checkpoints of one model configuration into one ensemble checkpoint, which `run --eval-only`
/// and `predict` score like any checkpoint (a pair's logit is the mean of the members' logits).
struct EnsembleCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "ensemble", abstract: "Combine checkpoints of one model configuration into one ensemble checkpoint (mean of the members' logits).")

  @Argument(help: "Member checkpoints (two or more single-network checkpoints, e.g. runs/<run-id>/best.safetensors).") var members: [String]
  @Option(name: .shortAndLong, help: "The ensemble checkpoint to write.") var output: String
  @Flag(help: "Store weights as F16 (halves the size; check that accuracy is unchanged).") var half = false

  func validate() throws {
    if members.count < 2 { throw ValidationError("an ensemble needs two or more member checkpoints") }
    if Set(members.map { URL(fileURLWithPath: $0).standardizedFileURL.path }).count != members.count {
      throw ValidationError("a checkpoint is listed twice; list each member once")
    }
  }

  func run() throws {
    // Checked before the members are read: an output that is a member, a device or a FIFO.
    let target = try OutputFile.resolve(output, inputs: members).get()
    let (networks, memberMetadata) = try readEnsembleMembers(members)
    try Checkpoint.writeEnsemble(members: networks, memberMetadata: memberMetadata, metadata: [:], to: URL(fileURLWithPath: target), half: half)
    print("wrote \(output): an ensemble of \(networks.count) networks (\(memberMetadata.map { $0["run_id"].map { String($0.prefix(8)) } ?? $0["source"]! }.joined(separator: ", ")))")
  }
}

/// Reads the member checkpoints of an ensemble; each must hold one network and all must share
/// one model configuration. Each member's metadata keeps where it came from (`source`, its
/// `sha256`) and what its checkpoint recorded (run id, experiment, step, best validation).
func readEnsembleMembers(_ paths: [String]) throws -> (networks: [EmbeddingNetwork], metadata: [[String: String]]) {
  var networks: [EmbeddingNetwork] = []
  var metadata: [[String: String]] = []
  var methods: [String] = []
  for path in paths {
    guard FileManager.default.fileExists(atPath: path) else {
      throw UserFacingError("checkpoint \(path) not found; list member checkpoints such as runs/<run-id>/best.safetensors")
    }
    let url = URL(fileURLWithPath: path)
    let (model, meta) = try Checkpoint.readModel(url)
    guard model.members.count == 1 else {
      throw UserFacingError("\(path) is already an ensemble of \(model.members.count) networks; list its member checkpoints instead")
    }
    if let first = networks.first, first.config != model.config {
      throw UserFacingError("\(path) has another model configuration than \(paths[0]); ensemble members must share one (train them with the same experiment file)")
    }
    guard let digest = SHA256.hex(ofFile: url) else { throw UserFacingError("cannot read checkpoint \(path) to hash it; check its permissions") }
    var kept: [String: String] = ["source": path, "sha256": digest]
    // The objective and the training configuration say how a member's episodes are scored (its
    // method, and MAML's adaptation): without them an ensemble of matching, fine-tuning or MAML
    // networks was scored as the default method of its similarity (prototypes, unscaled cosines).
    for key in ["run_id", "experiment", "step", "best_validation", "best_step", "objective", "experiment_config"] { kept[key] = meta[key] }
    // Compared as methods: a checkpoint from before `objective` was recorded has its
    // similarity's default method, the same as a newer one that names it.
    let method = FewShotMethods.method(objective: meta["objective"], similarity: model.config.similarity).name
    if let firstMethod = methods.first, firstMethod != method {
      throw UserFacingError(
        "\(path) was trained with the \(method) objective, \(paths[0]) with \(firstMethod); an ensemble scores every member by one method: list checkpoints of one objective")
    }
    methods.append(method)
    networks.append(model.members[0])
    metadata.append(kept)
  }
  return (networks, metadata)
}

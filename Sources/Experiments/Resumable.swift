import Foundation
import Model

/// A run that stopped before its first checkpoint (or whose runs folder is elsewhere).
package struct NoCheckpointToResume: UserCausedError {
  package let runID: String
  package let path: String
  package var description: String {
    "run \(runID) has no checkpoint at \(path) to resume from; if it was started with --runs DIR, pass the same --runs DIR (the run stays interrupted)"
  }
}

/// A run's last checkpoint, read and checked before the run is reopened, so that a resume
/// that cannot start leaves the run as it was (interrupted, resumable).
package struct Resumable {
  package let checkpoint: Checkpoint
  package let optimizer: Optimizer
  package let state: TrainingState

  /// Reads `runs/<run-id>/last.safetensors` under the plan's runs folder.
  package init(_ plan: RunPlan, runID: String) throws {
    let url = plan.folder(runID: runID).appendingPathComponent("last.safetensors")
    guard FileManager.default.fileExists(atPath: url.path) else { throw NoCheckpointToResume(runID: runID, path: url.path) }
    checkpoint = try Checkpoint.read(url, expecting: plan.config.model)
    // The checkpoint names the run that wrote it: another run's file copied over this one would
    // resume this run at that run's step, with its weights (issue #45, cause O).
    if let writer = checkpoint.metadata["run_id"], writer != runID {
      throw UserFacingError(
        "\(url.path) was written by run \(writer), not by run \(runID); put back run \(runID)'s own checkpoint, or resume run \(writer) instead (the run stays interrupted)")
    }
    guard let optimizer = checkpoint.optimizer, let state = TrainingState(metadata: checkpoint.metadata) else {
      throw UserFacingError("\(url.path) holds no optimizer or training state, so it cannot be resumed; start a new run")
    }
    // A run that averages its weights resumes its average: without it the best checkpoints
    // after the resume would not be the average the run kept.
    if plan.config.training?.emaDecay != nil && checkpoint.average == nil {
      throw UserFacingError("\(url.path) holds no weight average, but the run averages its weights (training.emaDecay); put back the run's own last checkpoint (the run stays interrupted)")
    }
    self.optimizer = optimizer
    self.state = state
  }
}


import Episodes
import Foundation
import Reports
import Model
import ResultsStore

/// A run that stopped before its first checkpoint (or whose runs folder is elsewhere).
struct NoCheckpointToResume: UserCausedError {
  let runID: String
  let path: String
  var description: String {
    "run \(runID) has no checkpoint at \(path) to resume from; if it was started with --runs DIR, pass the same --runs DIR (the run stays interrupted)"
  }
}

/// A run's last checkpoint, read and checked before the run is reopened, so that a resume
/// that cannot start leaves the run as it was (interrupted, resumable).
struct Resumable {
  let checkpoint: Checkpoint
  let optimizer: Optimizer
  let state: TrainingState

  /// Reads `runs/<run-id>/last.safetensors` under the plan's runs folder.
  init(_ plan: RunPlan, runID: String) throws {
    let url = plan.folder(runID: runID).appendingPathComponent("last.safetensors")
    guard FileManager.default.fileExists(atPath: url.path) else { throw NoCheckpointToResume(runID: runID, path: url.path) }
    checkpoint = try Checkpoint.read(url, expecting: plan.config.model)
    guard let optimizer = checkpoint.optimizer, let state = TrainingState(metadata: checkpoint.metadata) else {
      throw UserFacingError("\(url.path) holds no optimizer or training state, so it cannot be resumed; start a new run")
    }
    self.optimizer = optimizer
    self.state = state
  }
}

/// How a training run ended.
enum TrainingOutcome {
  case completed
  case stoppedEarly(step: Int)
  case interrupted(signal: Int32, step: Int)
  case failed(String)
}

/// Where training stands; saved in every last-checkpoint so `--resume` continues exactly.
struct TrainingState {
  var step = 0
  var bestValidation = -1.0
  var bestStep = -1
  var staleValidations = 0

  var metadata: [String: String] {
    ["step": String(step), "best_validation": String(bestValidation), "best_step": String(bestStep), "stale_validations": String(staleValidations)]
  }

  init() {}

  init?(metadata: [String: String]) {
    guard let step = Int(metadata["step"] ?? ""), let best = Double(metadata["best_validation"] ?? ""),
      let bestStep = Int(metadata["best_step"] ?? ""), let stale = Int(metadata["stale_validations"] ?? "")
    else { return nil }
    self.step = step
    self.bestValidation = best
    self.bestStep = bestStep
    self.staleValidations = stale
  }
}

/// The training loop: balanced pairs from the training alphabets, Koch's distortions, the
/// optimizer and schedule of the experiment, validation on held-out background alphabets,
/// best and last checkpoints under `runs/<run-id>/`.
final class Trainer {
  let config: ExperimentConfig
  let training: TrainingConfig
  /// The convolutions' arithmetic in training (the setting, or what `auto` resolved to).
  let precision: ConvolutionPrecision
  let background: ImageSplit
  let pairs: PairSampler
  let validationEpisodes: [ScoringEpisode]
  let folder: URL
  let store: ResultsStore
  let runID: String
  var network: SiameseNetwork
  var optimizer: Optimizer
  var state = TrainingState()
  /// Called every few seconds while training: the run's heartbeat in the store (it throws
  /// when another process has taken the run over).
  var heartbeat: () throws -> Void = {}
  /// The run's wall time so far, earlier sittings included (shown in the progress line).
  var elapsed: () -> Double = { 0 }
  private var lastHeartbeat = Date()
  private let augmentationKey = stableHash("augmentation")

  /// A trainer for a fresh network; creates the run's folder with its configuration.
  init(config: ExperimentConfig, training: TrainingConfig, precision: ConvolutionPrecision, data: ExperimentData.Training, folder: URL, store: ResultsStore, runID: String) throws {
    self.config = config
    self.training = training
    self.precision = precision
    self.background = data.background
    self.folder = folder
    self.store = store
    self.runID = runID
    pairs = data.pairs
    validationEpisodes = data.validationEpisodes
    try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    try Data(config.canonicalJSON.utf8).write(to: folder.appendingPathComponent("config.json"))
    network = SiameseNetwork(config: config.model, seed: config.seed)
    network.precision = precision
    network.convolutionAlgorithm = training.convolutions.algorithm
    optimizer = Optimizer(training.optimizer.config, store: network.store)
  }

  var bestURL: URL { folder.appendingPathComponent("best.safetensors") }
  var lastURL: URL { folder.appendingPathComponent("last.safetensors") }

  /// Restores network, optimizer and state from the run's last checkpoint.
  func resume(from resumable: Resumable) {
    let (checkpoint, optimizer, state) = (resumable.checkpoint, resumable.optimizer, resumable.state)
    network = checkpoint.network
    network.precision = precision
    network.convolutionAlgorithm = training.convolutions.algorithm
    self.optimizer = optimizer
    self.state = state
  }

  /// One step's images (as one input tensor), the pairs among them and their labels;
  /// augmentation is a pure function of (seed, step, image slot).
  func batch(_ step: Int) -> (images: Tensor, pairs: [(Int, Int)], labels: [Float]) {
    let count = training.pairsPerStep
    let images: [Int]
    let pairs: [TrainingPair]
    switch training.pairing {
    case .independent:
      let items = self.pairs.batch(step, pairs: count)
      images = items.map(\.left) + items.map(\.right)
      pairs = items.enumerated().map { TrainingPair(left: $0.offset, right: count + $0.offset, same: $0.element.same) }
    case .groups, .batch:
      let grouped = training.pairing == .groups ? self.pairs.groupedBatch(step, groups: count / 4) : self.pairs.withinBatch(step, groups: count / 24)
      images = grouped.images
      pairs = grouped.pairs
    }
    let size = background.size, n = size * size
    var data = [Float](repeating: 0, count: images.count * n)
    background.pixels.withUnsafeBufferPointer { pixels in
      data.withUnsafeMutableBufferPointer { out in
        for (slot, image) in images.enumerated() {
          let source = UnsafeBufferPointer(rebasing: pixels[(image * n)..<((image + 1) * n)])
          let destination = UnsafeMutableBufferPointer(rebasing: out[(slot * n)..<((slot + 1) * n)])
          if let augmentation = training.augmentation {
            var rng = SplitMix64(seed: config.seed, key: augmentationKey, index: UInt64(step * images.count + slot))
            augmentation.apply(source, size: size, into: destination, rng: &rng)
          } else {
            GrayImage.scaleInk(source, into: destination)
          }
        }
      }
    }
    return (Tensor(shape: [images.count, 1, size, size], data: data), pairs.map { ($0.left, $0.right) }, pairs.map { $0.same ? 1 : 0 })
  }

  /// Accuracy on the validation episodes.
  func validate() throws -> Double {
    let scorer = SiameseScorer(network: network)
    return try Evaluator(split: background).evaluate(scorer, episodes: validationEpisodes).accuracy
  }

  func saveLast() throws {
    try Checkpoint.write(network: network, optimizer: optimizer, metadata: checkpointMetadata.merging(state.metadata) { $1 }, to: lastURL)
  }

  var checkpointMetadata: [String: String] {
    ["run_id": runID, "experiment": config.name, "experiment_config": config.canonicalJSON]
  }

  /// Times (once per shape) and records which algorithm each convolution's directions run in
  /// this sitting: printed, and the run's tag `convolutions.chosen` (the last sitting's).
  func recordConvolutionChoices(progress: ProgressDisplay) throws {
    let summary = SiameseNetwork.summary(of: network.convolutionChoices(batch: training.imagesPerStep))
    progress.line("convolutions auto (forward/backward-data/backward-weights; d direct, w winograd): \(summary)")
    try store.setTag(run: runID, key: "convolutions.chosen", value: summary)
  }

  /// Trains from `state.step` to the budget, validating and checkpointing on the way.
  /// `evaluationWork` is the size of the evaluation still to come relative to one validation
  /// (images scored), so that the remaining time shown includes it.
  func train(progress: ProgressDisplay, evaluationWork: Double = 0) throws -> TrainingOutcome {
    let total = training.steps
    let schedule = training.schedule
    var lossSum = 0.0, lossCount = 0
    var windowStart = Date(), windowSteps = 0
    var fallbacksRecorded = 0
    // Remaining time: a moving average of step times (validations excluded), the validations
    // still to come and the evaluation, both at the last validation's speed.
    var stepSeconds: Double? = nil, validationSeconds: Double? = nil
    var stepStart = Date()
    var lastValidation = state.bestValidation >= 0 ? String(format: "%.1f%%", 100 * state.bestValidation) : "-"
    if training.convolutions == .auto { try recordConvolutionChoices(progress: progress) }
    while state.step < total {
      if InterruptFlag.requested {
        try saveLast()
        try store.flushMetrics()
        return .interrupted(signal: InterruptFlag.signal, step: state.step)
      }
      let step = state.step
      stepStart = Date()
      let (images, pairIndices, labels) = batch(step)
      let rate = schedule.rate(base: training.optimizer.learningRate, step: step, totalSteps: total)
      let (loss, _) = network.lossAndGradients(images: images, pairs: pairIndices, labels: labels)
      guard loss.isFinite else {
        try store.flushMetrics()
        return .failed("training loss became \(loss) at step \(step); lower training.optimizer.learningRate or add a warm-up")
      }
      optimizer.update(&network.store, learningRate: rate)
      state.step += 1
      if OneDNNFallbacks.reasons.count > fallbacksRecorded {
        // A layer oneDNN could not build runs its Swift kernel: correct, slower; said and recorded.
        fallbacksRecorded = OneDNNFallbacks.reasons.count
        progress.line("note: " + OneDNNFallbacks.reasons.joined(separator: "; "))
        try store.setTag(run: runID, key: "onednn.fallbacks", value: OneDNNFallbacks.reasons.joined(separator: "; "))
      }
      lossSum += loss
      lossCount += 1
      windowSteps += 1
      // Throughput over the steps since the last log line, not since the start, so a pause
      // or a validation does not drag the figure for the rest of the run.
      let pairsPerSecond = Double(windowSteps * training.pairsPerStep) / max(Date().timeIntervalSince(windowStart), 1e-9)
      if Date().timeIntervalSince(lastHeartbeat) >= 10 {
        try heartbeat()
        lastHeartbeat = Date()
      }
      if state.step % training.logEvery == 0 || state.step == total {
        try store.logMetric(run: runID, MetricPoint(key: MetricKey.trainingLoss, step: state.step, value: lossSum / Double(lossCount)))
        try store.logMetric(run: runID, MetricPoint(key: MetricKey.pairsPerSecond, step: state.step, value: pairsPerSecond))
        try store.logMetric(run: runID, MetricPoint(key: MetricKey.learningRate, step: state.step, value: rate))
        lossSum = 0
        lossCount = 0
        windowStart = Date()
        windowSteps = 0
      }
      let stepTime = Date().timeIntervalSince(stepStart)
      stepSeconds = stepSeconds.map { 0.95 * $0 + 0.05 * stepTime } ?? stepTime
      let every = training.validation.every
      let validationsLeft = Double((total - state.step) / every + ((total % every == 0) ? 0 : 1))
      let eta = Double(total - state.step) * stepSeconds! + (validationSeconds ?? 0) * (validationsLeft + evaluationWork)
      let etaText = validationSeconds == nil ? formatDuration(eta) + " + validation and evaluation" : formatDuration(eta)
      progress.update(
        String(format: "step %d/%d  loss %.4f  %.1f pairs/s  elapsed %@  eta %@  val %@", state.step, total, loss, pairsPerSecond, formatDuration(elapsed()), etaText, lastValidation))
      if state.step % every == 0 || state.step == total {
        progress.update(String(format: "step %d/%d  validating on %d episodes...", state.step, total, validationEpisodes.count), force: true)
        let validationStart = Date()
        let accuracy = try validate()
        validationSeconds = Date().timeIntervalSince(validationStart)
        try store.logMetric(run: runID, MetricPoint(key: MetricKey.validationAccuracy, step: state.step, value: accuracy))
        lastValidation = String(format: "%.1f%%", 100 * accuracy)
        if accuracy > state.bestValidation {
          state.bestValidation = accuracy
          state.bestStep = state.step
          state.staleValidations = 0
          try Checkpoint.write(network: network, optimizer: nil, metadata: checkpointMetadata.merging(state.metadata) { $1 }, to: bestURL)
        } else {
          state.staleValidations += 1
        }
        try saveLast()
        try store.flushMetrics()
        try heartbeat()
        lastHeartbeat = Date()
        progress.line(
          String(format: "step %d/%d  validation %.2f%% (best %.2f%% at step %d)  loss %.4f", state.step, total, 100 * accuracy, 100 * state.bestValidation, state.bestStep, loss))
        if training.patience > 0 && state.staleValidations >= training.patience {
          return .stoppedEarly(step: state.step)
        }
      }
    }
    return .completed
  }
}

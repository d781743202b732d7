import Episodes
import Foundation
import Model
import ResultsStore
import Reports

/// What the trainer reports while it works. It writes nothing itself: the caller decides where
/// each event goes (the run's store, the progress line, a test's list).
package enum TrainingEvent {
  /// The training figures at a log point: the mean loss since the last one, the throughput over
  /// the same steps (pairs a second, or images for the prototypical objective; `key` is its
  /// metric) and the learning rate of the step.
  case logged(step: Int, loss: Double, throughput: (key: String, perSecond: Double), learningRate: Double)
  /// A validation: its accuracy and the best so far.
  case validated(step: Int, accuracy: Double)
  /// The last checkpoint is on disk at `step` (so are the metrics before it, once recorded).
  case checkpointSaved(step: Int)
  /// A validation reached one of `training.targets` for the first time.
  case targetReached(TargetReached)
  /// A fact about this sitting recorded with the run (`convolutions.chosen`, `onednn.fallbacks`).
  case tag(key: String, value: String)
  /// Every few seconds: the trainer is alive.
  case alive
  /// The progress line; `urgent` shows it even when the last update was recent.
  case status(String, urgent: Bool = false)
  /// A line of its own for the user.
  case note(String)
}

/// How training ended: it went to its budget or stopped early, and the best checkpoint should
/// be evaluated; or the run ends here (interrupted, or failed).
package enum TrainingEnd {
  case finished(stoppedEarlyAt: Int?)
  case stopped(RunOutcome)
}

/// Where training stands; saved in every last-checkpoint so `--resume` continues exactly.
package struct TrainingState {
  package var step = 0
  package var bestValidation = -1.0
  package var bestStep = -1
  package var staleValidations = 0
  /// Seconds spent in training steps so far, every sitting's (validation excluded).
  package var trainingSeconds = 0.0
  /// The losses since the last log point (their sum and count), so that a run resumed between
  /// log points logs the same mean loss as an uninterrupted one.
  package var unloggedLossSum = 0.0
  package var unloggedSteps = 0

  package var metadata: [String: String] {
    [
      "step": String(step), "best_validation": String(bestValidation), "best_step": String(bestStep), "stale_validations": String(staleValidations),
      "training_seconds": String(trainingSeconds), "unlogged_loss_sum": String(unloggedLossSum), "unlogged_steps": String(unloggedSteps),
    ]
  }

  package init() {}

  package init?(metadata: [String: String]) {
    guard let step = Int(metadata["step"] ?? ""), let best = Double(metadata["best_validation"] ?? ""),
      let bestStep = Int(metadata["best_step"] ?? ""), let stale = Int(metadata["stale_validations"] ?? "")
    else { return nil }
    self.step = step
    self.bestValidation = best
    self.bestStep = bestStep
    self.staleValidations = stale
    // Absent in checkpoints written before time to accuracy was recorded.
    self.trainingSeconds = Double(metadata["training_seconds"] ?? "") ?? 0
    self.unloggedLossSum = Double(metadata["unlogged_loss_sum"] ?? "") ?? 0
    self.unloggedSteps = Int(metadata["unlogged_steps"] ?? "") ?? 0
  }
}

/// The training loop: steps of the experiment's few-shot method (which draws its pairs or
/// episodes from the training classes, with the file's distortions), the optimizer and schedule
/// of the experiment, validation on held-out background alphabets, best and last checkpoints
/// under `runs/<run-id>/`. Everything it has to say goes to `report`.
package final class Trainer {
  package let config: ExperimentConfig
  package let training: TrainingConfig
  /// The convolutions' arithmetic in training (the setting, or what `auto` resolved to).
  package let precision: ConvolutionPrecision
  /// Batch norm and the max pooling after it as one fused layer (the probe's choice).
  package let fusesNormalizationPooling: Bool
  package let background: ImageSplit
  /// What a step trains.
  package let method: any FewShotMethod.Type
  /// What a step can draw (pairs, episodes, augmented images).
  package let draws: TrainingDraws
  package let validationEpisodes: [ScoringEpisode]
  package let folder: URL
  /// Recorded in the checkpoints' metadata.
  package let runID: String
  package var network: EmbeddingNetwork
  package var optimizer: Optimizer
  /// The moving average of the weights (`training.emaDecay`), or nil.
  package var average: WeightAverage?
  package var state = TrainingState()
  /// Where events go; throwing stops training with that error (another process took the run).
  package var report: (TrainingEvent) throws -> Void = { _ in }
  /// The run's wall time so far, earlier sittings included (shown in the progress line).
  package var elapsed: () -> Double = { 0 }
  private var lastAlive = Date()
  private var fallbacksReported = 0
  private var unfusedReported = 0

  /// A trainer for a fresh network; creates the run's folder with its configuration.
  package init(
    config: ExperimentConfig, training: TrainingConfig, precision: ConvolutionPrecision, fusesNormalizationPooling: Bool, data: ExperimentData.Training, folder: URL,
    runID: String
  ) throws {
    self.config = config
    self.training = training
    self.precision = precision
    self.fusesNormalizationPooling = fusesNormalizationPooling
    self.background = data.background
    self.folder = folder
    self.runID = runID
    method = training.method
    validationEpisodes = data.validationEpisodes
    let (split, augmentation, seed) = (data.background, training.augmentation, config.seed)
    draws = TrainingDraws(training: training, pairs: data.pairs, episodes: data.episodes) { images, step in
      Trainer.input(images, step: step, split: split, augmentation: augmentation, seed: seed)
    }
    try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    try Data(config.canonicalJSON.utf8).write(to: folder.appendingPathComponent("config.json"))
    network = EmbeddingNetwork(config: config.model, seed: config.seed)
    network.precision = precision
    network.convolutionAlgorithm = training.convolutions.algorithm
    network.fusesNormalizationPooling = fusesNormalizationPooling
    optimizer = Optimizer(training.optimizer.config, store: network.store)
    average = training.emaDecay.map { WeightAverage(decay: $0, store: network.store) }
  }

  package var bestURL: URL { folder.appendingPathComponent("best.safetensors") }
  package var lastURL: URL { folder.appendingPathComponent("last.safetensors") }

  /// Restores network, optimizer and state from the run's last checkpoint.
  package func resume(from resumable: Resumable) {
    network = resumable.checkpoint.network
    network.precision = precision
    network.convolutionAlgorithm = training.convolutions.algorithm
    network.fusesNormalizationPooling = fusesNormalizationPooling
    optimizer = resumable.optimizer
    average = resumable.checkpoint.average
    state = resumable.state
  }

  /// Trains from `state.step` to the budget, validating and checkpointing on the way.
  /// `evaluationWork` is the evaluation still to come relative to one validation (images
  /// scored), so that the time left includes it.
  package func train(evaluationWork: Double = 0) throws -> TrainingEnd {
    var window = LogWindow(lossSum: state.unloggedLossSum, steps: state.unloggedSteps)
    var timeLeft = TimeLeft(totalSteps: training.steps, validateEvery: training.validation.every, evaluationWork: evaluationWork)
    var lastValidation = state.bestValidation >= 0 ? String(format: "%.1f%%", 100 * state.bestValidation) : "-"
    if training.convolutions == .auto { try reportConvolutionChoices() }
    while state.step < training.steps {
      if InterruptFlag.requested { return .stopped(try interrupt()) }
      let started = Date()
      let (loss, rate) = step()
      state.trainingSeconds += Date().timeIntervalSince(started)
      guard loss.isFinite else {
        return .stopped(.failed("training loss became \(loss) at step \(state.step); lower training.optimizer.learningRate or add a warm-up"))
      }
      try reportFallbacks()
      window.add(loss)
      (state.unloggedLossSum, state.unloggedSteps) = (window.lossSum, window.steps)
      let throughput = window.perSecond(method.throughputPerStep(training))
      try reportAliveEverySeconds(10)
      let last = state.step == training.steps
      if state.step % training.logEvery == 0 || last {
        try report(.logged(step: state.step, loss: window.meanLoss, throughput: (throughputKey, throughput), learningRate: rate))
        window = LogWindow()
        (state.unloggedLossSum, state.unloggedSteps) = (0, 0)
      }
      timeLeft.stepTook(Date().timeIntervalSince(started))
      try report(
        .status(
          String(
            format: "step %d/%d  loss %.4f  %.1f %@/s  elapsed %@  eta %@  val %@", state.step, training.steps, loss, throughput, method.throughputUnit.rawValue,
            formatDuration(elapsed()), timeLeft.text(atStep: state.step), lastValidation)))
      if state.step % training.validation.every == 0 || last {
        let validationStart = Date()
        let accuracy = try validateAndCheckpoint(loss: loss)
        timeLeft.validationTook(Date().timeIntervalSince(validationStart))
        lastValidation = String(format: "%.1f%%", 100 * accuracy)
        if training.patience > 0 && state.staleValidations >= training.patience { return .finished(stoppedEarlyAt: state.step) }
        if training.stopAtTarget, let highest = training.targets?.max(), state.bestValidation >= highest, !last { return .finished(stoppedEarlyAt: state.step) }
      }
    }
    return .finished(stoppedEarlyAt: nil)
  }

  /// The metric of the training throughput.
  private var throughputKey: String { method.throughputUnit.metricKey }

  /// One optimizer step on the batch (or episode) of `state.step`: its loss and learning rate.
  private func step() -> (loss: Double, rate: Double) {
    let rate = training.schedule.rate(base: training.optimizer.learningRate, step: state.step, totalSteps: training.steps)
    let loss = method.lossAndGradients(step: state.step, network: &network, draws: draws)
    guard loss.isFinite else { return (loss, rate) }
    optimizer.update(&network.store, learningRate: rate, baseRate: training.optimizer.learningRate)
    average?.update(network.store)
    state.step += 1
    return (loss, rate)
  }

  /// Validates, keeps the best checkpoint, writes the last one; returns the accuracy.
  private func validateAndCheckpoint(loss: Double) throws -> Double {
    try report(.status(String(format: "step %d/%d  validating on %d episodes...", state.step, training.steps, validationEpisodes.count), urgent: true))
    let accuracy = try validate()
    try report(.validated(step: state.step, accuracy: accuracy))
    try reportTargets(reachedBy: accuracy)
    if accuracy > state.bestValidation {
      state.bestValidation = accuracy
      state.bestStep = state.step
      state.staleValidations = 0
      try Checkpoint.write(network: scoredNetwork, optimizer: nil, metadata: checkpointMetadata.merging(state.metadata) { $1 }, to: bestURL)
    } else {
      state.staleValidations += 1
    }
    try saveLast()
    try report(.checkpointSaved(step: state.step))
    lastAlive = Date()
    try report(
      .note(String(format: "step %d/%d  validation %.2f%% (best %.2f%% at step %d)  loss %.4f", state.step, training.steps, 100 * accuracy, 100 * state.bestValidation, state.bestStep, loss)))
    return accuracy
  }

  /// Records each target this validation reaches first (above the best before it).
  private func reportTargets(reachedBy accuracy: Double) throws {
    for target in (training.targets ?? []).sorted() where target > state.bestValidation && target <= accuracy {
      let reached = TargetReached(
        target: target, step: state.step, trainingSeconds: state.trainingSeconds, wallSeconds: elapsed(),
        pairs: Double(state.step * method.pairsPerStep(training)), images: Double(state.step * training.imagesPerStep))
      try report(.targetReached(reached))
      try report(.note(String(format: "step %d: validation target %.2f%% reached after %@ of training (%@ with validation)", state.step, 100 * target, formatDuration(reached.trainingSeconds), formatDuration(reached.wallSeconds))))
    }
  }

  /// Saves the last checkpoint on a signal; the run ends interrupted.
  private func interrupt() throws -> RunOutcome {
    try saveLast()
    try report(.checkpointSaved(step: state.step))
    return .interrupted(signal: InterruptFlag.signal, step: state.step)
  }

  private func reportAliveEverySeconds(_ seconds: Double) throws {
    guard Date().timeIntervalSince(lastAlive) >= seconds else { return }
    try report(.alive)
    lastAlive = Date()
  }

  /// A layer oneDNN could not build runs its Swift kernel, and a batch norm + pooling pair asked
  /// to fuse may run unfused: correct, slower; each said and recorded when first seen.
  private func reportFallbacks() throws {
    if fusesNormalizationPooling { try reportNew(ReasonLog.unfusedPairs, tag: "fusion.unfused", reported: &unfusedReported) }
    try reportNew(ReasonLog.oneDNNFallbacks, tag: "onednn.fallbacks", reported: &fallbacksReported)
  }

  /// Prints and records `log`'s reasons (tag `tag`) when it has more than `reported` of them.
  private func reportNew(_ log: ReasonLog, tag: String, reported: inout Int) throws {
    let reasons = log.reasons
    guard reasons.count > reported else { return }
    reported = reasons.count
    try report(.note("note: " + reasons.joined(separator: "; ")))
    try report(.tag(key: tag, value: reasons.joined(separator: "; ")))
  }

  /// Times (once per shape) and reports which algorithm each convolution's directions run in
  /// this sitting: printed, and recorded as the run's tag `convolutions.chosen` in its first
  /// sitting and `convolutions.chosen.from-step-N` in a sitting resumed at step N (timed again
  /// there, the choice can differ; every sitting's stays on the record).
  private func reportConvolutionChoices() throws {
    let summary = EmbeddingNetwork.summary(of: network.convolutionChoices(batch: training.imagesPerStep))
    try report(.note("convolutions auto (forward/backward-data/backward-weights; d direct, w winograd): \(summary)"))
    try report(.tag(key: TagKey.convolutionsChosen(resumedAt: state.step), value: summary))
  }

  /// The key of the augmentation's random streams.
  private static let augmentationKey = stableHash("augmentation")

  /// Images of the training split as a network input; augmentation is a pure function of
  /// (seed, step, image slot).
  static func input(_ images: [Int], step: Int, split background: ImageSplit, augmentation: AffineAugmentation?, seed: UInt64) -> Tensor {
    input(images, step: step, pixels: background.pixels, size: background.size, augmentation: augmentation, seed: seed)
  }

  /// Images `images` of `stock` (`size * size` ink bytes each) as a network input, as training
  /// prepares every step's (`bench` times it against the step).
  package static func input(_ images: [Int], step: Int, pixels stock: [UInt8], size: Int, augmentation: AffineAugmentation?, seed: UInt64) -> Tensor {
    let n = size * size
    var data = [Float](repeating: 0, count: images.count * n)
    stock.withUnsafeBufferPointer { pixels in
      data.withUnsafeMutableBufferPointer { out in
        // Each slot's stream and bytes are its own: split over the threads, the same input.
        ComputeThreads.forEachRange(images.count, minimumPerThread: 16) { slots in
          for slot in slots {
            let image = images[slot]
            let source = UnsafeBufferPointer(rebasing: pixels[(image * n)..<((image + 1) * n)])
            let destination = UnsafeMutableBufferPointer(rebasing: out[(slot * n)..<((slot + 1) * n)])
            if let augmentation {
              var rng = SplitMix64(seed: seed, key: Trainer.augmentationKey, index: UInt64(step * images.count + slot))
              augmentation.apply(source, size: size, into: destination, rng: &rng)
            } else {
              GrayImage.scaleInk(source, into: destination)
            }
          }
        }
      }
    }
    return Tensor(shape: [images.count, 1, size, size], data: data)
  }

  /// Accuracy on the validation episodes.
  package func validate() throws -> Double {
    try Evaluator(split: background).evaluate(NetworkScorer(network: scoredNetwork, method: method, settings: ScoringSettings(training: training)), episodes: validationEpisodes).accuracy
  }

  /// The network validation scores and the best checkpoint keeps: the weight average where
  /// the run keeps one, else the network as trained.
  package var scoredNetwork: EmbeddingNetwork {
    guard let average else { return network }
    var averaged = network
    averaged.store = average.applied(to: network.store)
    return averaged
  }

  package func saveLast() throws {
    try Checkpoint.write(network: network, optimizer: optimizer, average: average, metadata: checkpointMetadata.merging(state.metadata) { $1 }, to: lastURL)
  }

  package var checkpointMetadata: [String: String] {
    ["run_id": runID, "experiment": config.name, "experiment_config": config.canonicalJSON, "objective": training.objective]
  }
}

/// The steps since the last log point: their mean loss and throughput (over these steps only,
/// so a pause or a validation does not drag the figure for the rest of the run).
struct LogWindow {
  private(set) var lossSum = 0.0
  private(set) var steps = 0
  /// Steps taken in this sitting (the throughput's, whose clock starts with it).
  private var timedSteps = 0
  private let start = Date()

  /// A window that already holds `steps` losses summing to `lossSum` (from before a resume).
  init(lossSum: Double = 0, steps: Int = 0) {
    self.lossSum = lossSum
    self.steps = steps
  }

  mutating func add(_ loss: Double) {
    lossSum += loss
    steps += 1
    timedSteps += 1
  }

  var meanLoss: Double { lossSum / Double(max(steps, 1)) }

  /// Items (pairs or images) a second, at `perStep` items a step.
  func perSecond(_ perStep: Int) -> Double { Double(timedSteps * perStep) / max(Date().timeIntervalSince(start), 1e-9) }
}

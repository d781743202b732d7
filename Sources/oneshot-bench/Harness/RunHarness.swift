import Episodes
import Foundation
import Model
import ResultsStore

/// The data one experiment needs, loaded and checked before anything is written.
struct ExperimentData {
  let dataset: OmniglotDataset
  let background: ImageSplit
  let pools: (training: ClassPool, validation: ClassPool)
  let evaluation: ImageSplit?
  let runs: LakeRuns?

  /// Loads the splits the experiment uses at the model's input size and checks every
  /// episode spec against them (an impossible spec fails here, before any work).
  static func load(_ config: ExperimentConfig, dataPath: String?) throws -> ExperimentData {
    let dataset = OmniglotDataset(root: URL(fileURLWithPath: dataPath ?? config.data.path))
    let size = config.model.inputSize
    let needsEvaluation = config.evaluation.contains { $0.protocolKind == .episodes && $0.split == "evaluation" }
    let splits = try dataset.load(needsEvaluation ? [.background, .evaluation] : [.background], size: size)
    let background = splits[0]
    let pools = try background.trainingAndValidation(validationAlphabets: config.data.validationAlphabets)
    _ = try EpisodeSampler(pool: pools.validation, spec: config.training.validation.spec, seed: 0)
    _ = try PairSampler(pool: pools.training, sameAlphabetNegatives: config.data.sameAlphabetNegatives, seed: 0)
    let evaluation = needsEvaluation ? splits[1] : nil
    for item in config.evaluation where item.protocolKind == .episodes {
      let pool = item.split == "evaluation" ? ClassPool(split: evaluation!) : pools.validation
      do {
        _ = try EpisodeSampler(pool: pool, spec: item.spec, seed: item.seed)
      } catch let error as DatasetError {
        throw UserFacingError("protocol \(item.name): \(error)")
      }
    }
    let runs = config.evaluation.contains { $0.protocolKind == .lake20 } ? try LakeRuns.load(from: dataset, size: size) : nil
    return ExperimentData(dataset: dataset, background: background, pools: pools, evaluation: evaluation, runs: runs)
  }
}

/// Scores a network (or an ensemble of them) on every protocol of the experiment and records the results.
func evaluateProtocols(_ model: SiameseEnsemble, config: ExperimentConfig, data: ExperimentData, store: ResultsStore, runID: String, progress: ProgressDisplay) throws
  -> [ProtocolResult]
{
  var results: [ProtocolResult] = []
  for item in config.evaluation {
    let scorer = SiameseScorer(model: model)
    let summary: EvaluationSummary
    let split: String
    switch item.protocolKind {
    case .lake20:
      let runs = data.runs!
      progress.update("evaluating \(item.name): 20 runs x 20 trials...", force: true)
      summary = try Evaluator(runs: runs).evaluate(scorer, episodes: runs.scoringEpisodes)
      split = "lake20"
    case .episodes:
      let pool = item.split == "evaluation" ? ClassPool(split: data.evaluation!) : data.pools.validation
      let sampler = try EpisodeSampler(pool: pool, spec: item.spec, seed: item.seed)
      let episodes = sampler.episodes(count: item.episodes).map { $0.scoring(in: pool.split) }
      progress.update("evaluating \(item.name): \(item.episodes) episodes...", force: true)
      summary = try Evaluator(split: pool.split).evaluate(scorer, episodes: episodes) { done, total in
        progress.update("evaluating \(item.name): \(done)/\(total) episodes")
      }
      split = pool.name
    }
    let ways = item.protocolKind == .lake20 ? 20 : item.spec.ways
    let shots = item.protocolKind == .lake20 ? 1 : item.spec.shots
    let queries = item.protocolKind == .lake20 ? 1 : item.spec.queries
    let result = ProtocolResult(
      protocolName: item.name, split: split, ways: ways, shots: shots, queries: queries, episodes: summary.episodes.count,
      accuracy: summary.accuracy, ciLow: summary.accuracy - summary.halfWidth95, ciHigh: summary.accuracy + summary.halfWidth95, seconds: summary.seconds)
    try store.recordResult(run: runID, result, episodes: summary.episodes.map { EpisodeRow(episode: $0.index, alphabet: $0.group, correct: $0.correct, total: $0.total) })
    results.append(result)
    progress.line(
      String(
        format: "%@: %.2f%% +- %.2f (95%% CI, %d episodes, %.1f s)", item.name, 100 * result.accuracy, 100 * (result.ciHigh - result.accuracy), result.episodes, result.seconds))
  }
  return results
}

/// Options of `run` that are not in the experiment file.
struct RunOptions {
  var storePath: String
  var threads: Int?
  /// Replaces the experiment file's seed (it becomes part of the recorded configuration).
  var seed: UInt64? = nil
  var evalOnlyCheckpoint: String?
  var resumeRunID: String?
  var dataPath: String?
  var runsFolder: String = "runs"
}

/// Runs an experiment end to end and returns the exit code: 0 completed, 1 failed (NaN),
/// 130/143 interrupted (SIGINT/SIGTERM). User errors throw before anything is written.
func runExperiment(configPath: String?, options: RunOptions) throws -> Int32 {
  let progress = ProgressDisplay()
  // 1. Configuration: from the file, or the stored one of the run being resumed.
  var config: ExperimentConfig
  var resumeID: String? = nil
  var store: ResultsStore? = nil
  if let resume = options.resumeRunID {
    let opened = try ResultsStore(path: options.storePath)
    let id = try opened.resolveRunID(resume)
    let detail = try opened.run(id)
    guard detail.summary.status != .completed else { throw UserFacingError("run \(id) already completed; nothing to resume") }
    do {
      config = try JSONDecoder().decode(ExperimentConfig.self, from: Data(detail.configJSON.utf8))
    } catch {
      throw UserFacingError("run \(id)'s stored configuration cannot be read by this oneshot-bench (\(error)); start a new run")
    }
    resumeID = id
    store = opened
  } else {
    guard let configPath else { throw UserFacingError("give an experiment file (e.g. experiments/vgg105.json) or --resume RUN_ID") }
    config = try ExperimentConfig.load(configPath)
  }
  if let threads = options.threads { config.threads = threads }
  if let seed = options.seed { config.seed = seed }
  ComputeThreads.set(config.threads)

  // 2. Data and every episode spec, checked before the store is touched.
  let loadStart = Date()
  let data = try ExperimentData.load(config, dataPath: options.dataPath)
  progress.line(
    String(
      format: "data: %d background images (%d training / %d validation classes) at %dx%d in %.2f s", data.background.images.count, data.pools.training.classes.count,
      data.pools.validation.classes.count, config.model.inputSize, config.model.inputSize, Date().timeIntervalSince(loadStart)))
  var evalModel: SiameseEnsemble? = nil
  var evalTags: [(key: String, value: String)] = []
  var checkpointPath: String? = nil
  if let path = options.evalOnlyCheckpoint {
    guard FileManager.default.fileExists(atPath: path) else {
      throw UserFacingError("checkpoint \(path) not found; pass --checkpoint PATH (a run keeps its best under runs/<run-id>/best.safetensors)")
    }
    let read = try Checkpoint.readModel(URL(fileURLWithPath: path), expecting: config.model)
    evalModel = read.model
    evalTags = [("mode", "eval-only")]
    if read.model.members.count > 1 {
      let memberRuns = read.model.members.indices.map { read.metadata[Checkpoint.memberKey($0, "run_id")] ?? "unknown" }
      evalTags += [(Checkpoint.membersKey, String(read.model.members.count)), ("ensemble_runs", memberRuns.joined(separator: ","))]
    }
    checkpointPath = path
  }

  // 3. The run row, committed at once.
  let store_ = try store ?? ResultsStore(path: options.storePath)
  let provenance = Provenance.current()
  let runID: String
  if let resumeID {
    runID = resumeID
    try store_.reopenRun(runID)
  } else {
    var run = NewRun(experiment: config.name, configJSON: config.canonicalJSON, configHash: SHA256.hex(Array(config.canonicalJSON.utf8)), params: flattenJSON(config.canonicalJSON))
    run.gitCommit = provenance.gitCommit
    run.gitDirty = provenance.gitDirty
    run.datasetFingerprint = try? data.dataset.fingerprint()
    run.host = provenance.host
    run.cpu = provenance.cpu
    run.harnessVersion = harnessVersion
    run.swiftVersion = provenance.swiftVersion
    runID = try store_.beginRun(run)
    for tag in evalTags { try store_.setTag(run: runID, key: tag.key, value: tag.value) }
  }
  progress.line("run \(runID) (\(config.name)) recording into \(options.storePath)")
  // A resumed run's wall time includes the time spent before the interruption.
  let earlier = resumeID.flatMap { id in try? store_.run(id).summary.durationSeconds } ?? 0
  let started = Date().addingTimeInterval(-earlier)

  // 4. Training.
  InterruptFlag.install()
  if evalModel == nil {
    let folder = URL(fileURLWithPath: options.runsFolder).appendingPathComponent(runID)
    let trainer: Trainer
    do {
      try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
      try Data(config.canonicalJSON.utf8).write(to: folder.appendingPathComponent("config.json"))
      trainer = try Trainer(config: config, background: data.background, pools: data.pools, folder: folder, store: store_, runID: runID)
      if resumeID != nil {
        guard FileManager.default.fileExists(atPath: trainer.lastURL.path) else {
          throw UserFacingError("run \(runID) has no checkpoint at \(trainer.lastURL.path) to resume from; start a new run")
        }
        try trainer.resume(from: Checkpoint.read(trainer.lastURL, expecting: config.model))
        progress.line("resuming at step \(trainer.state.step) of \(config.training.steps)")
      }
    } catch {
      try? store_.finishRun(runID, status: .failed, error: "\(error)")
      throw error
    }
    let outcome: TrainingOutcome
    do {
      outcome = try trainer.train(progress: progress)
    } catch {
      try? store_.finishRun(runID, status: .failed, error: "\(error)", durationSeconds: Date().timeIntervalSince(started))
      throw error
    }
    progress.finish()
    switch outcome {
    case .failed(let message):
      try store_.finishRun(runID, status: .failed, error: message, durationSeconds: Date().timeIntervalSince(started))
      printError(message)
      return 1
    case .interrupted(let signal, let step):
      try store_.finishRun(runID, status: .interrupted, error: "interrupted by signal \(signal) at step \(step)", durationSeconds: Date().timeIntervalSince(started))
      printError("interrupted at step \(step); checkpoint saved. Continue with: oneshot-bench run --resume \(runID) --store \(options.storePath)")
      return 128 + signal
    case .stoppedEarly(let step):
      progress.line("stopped early at step \(step): no validation improvement in \(config.training.patience) validations")
    case .completed:
      break
    }
    progress.line(String(format: "best validation %.2f%% at step %d", 100 * trainer.state.bestValidation, trainer.state.bestStep))
    evalModel = try Checkpoint.readModel(trainer.bestURL, expecting: config.model).model
    checkpointPath = trainer.bestURL.path
  }

  // 5. Evaluation of the chosen checkpoint, recorded.
  if let checkpointPath {
    try store_.setCheckpoint(run: runID, path: checkpointPath, hash: try OmniglotDataset.sha256(ofFile: URL(fileURLWithPath: checkpointPath)))
  }
  let results: [ProtocolResult]
  do {
    results = try evaluateProtocols(evalModel!, config: config, data: data, store: store_, runID: runID, progress: progress)
  } catch {
    try? store_.finishRun(runID, status: .failed, error: "evaluation: \(error)", durationSeconds: Date().timeIntervalSince(started))
    throw error
  }
  let duration = Date().timeIntervalSince(started)
  try store_.finishRun(runID, status: .completed, durationSeconds: duration)
  progress.finish()
  print(resultsTable(runID: runID, experiment: config.name, results: results, duration: duration))
  return 0
}

/// The table `run` prints at the end.
func resultsTable(runID: String, experiment: String, results: [ProtocolResult], duration: Double) -> String {
  var lines = ["run \(runID)  \(experiment)  \(formatDuration(duration))"]
  lines.append("protocol".padding(toLength: 40, withPad: " ", startingAt: 0) + "accuracy   95% CI            episodes")
  for r in results {
    lines.append(
      r.protocolName.padding(toLength: 40, withPad: " ", startingAt: 0)
        + String(format: "%6.2f%%   [%6.2f, %6.2f]   %d", 100 * r.accuracy, 100 * r.ciLow, 100 * r.ciHigh, r.episodes))
  }
  return lines.joined(separator: "\n")
}

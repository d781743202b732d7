import Episodes
import Foundation
import Reports
import Model
import ResultsStore
import Support

/// Runs an experiment end to end and returns the exit code: 0 completed, 1 failed (NaN),
/// 130/143 interrupted (SIGINT/SIGTERM). User errors throw before anything is written.
///   plan -> data -> run row -> train (unless eval-only) -> evaluate -> record
func runExperiment(configPath: String?, options: RunOptions) throws -> Int32 {
  try runExperiment(try RunPlan(configPath: configPath, options: options))
}

/// Runs a checked plan (see `runExperiment(configPath:options:)`).
func runExperiment(_ plan: RunPlan) throws -> Int32 {
  let progress = ProgressDisplay()
  let config = plan.config, options = plan.options
  ComputeThreads.set(config.threads)
  let loadStart = Date()
  let data = try ExperimentData.load(config, dataPath: options.dataPath, training: plan.trains ? config.training : nil)
  if let training = data.training {
    progress.line(
      String(
        format: "data: %d background images (%d training / %d validation classes) at %dx%d in %.2f s", training.background.images.count, training.pools.training.classes.count,
        training.pools.validation.classes.count, config.model.inputSize, config.model.inputSize, Date().timeIntervalSince(loadStart)))
  }
  let evaluated: (model: SiameseEnsemble, path: String, tags: [(key: String, value: String)])?
  if case .evalOnly(let checkpoint) = plan.mode { evaluated = try readEvaluatedCheckpoint(checkpoint, config: config) } else { evaluated = nil }

  if case .fresh = plan.mode { try plan.checkRunsFolder() }

  let precision = try trainingPrecision(plan, progress: progress)
  let precisionTag: [(key: String, value: String)] = plan.trains ? [("precision.resolved", precision.rawValue)] : []
  let run = try beginRun(plan, data: data, tags: (evaluated?.tags ?? []) + precisionTag)
  let resumable = try run.resumable(plan)
  progress.line("run \(run.id) (\(config.name)) recording into \(run.store.displayPath)")
  InterruptFlag.install()
  let ending = try run.recording {
    // The checkpoint to evaluate: the given one, or the best of this training.
    let model: SiameseEnsemble, path: String
    if let evaluated {
      (model, path) = (evaluated.model, evaluated.path)
    } else if let settings = config.training, let training = data.training {
      let trainer = try Trainer(config: config, training: settings, precision: precision, data: training, folder: plan.folder(runID: run.id), store: run.store, runID: run.id)
      trainer.heartbeat = { try run.heartbeat() }
      trainer.elapsed = { run.elapsed }
      if let resumable {
        trainer.resume(from: resumable)
        progress.line("resuming at step \(trainer.state.step) of \(settings.steps)")
      }
      switch try trainer.train(progress: progress, evaluationWork: imagesScored(data.protocols.flatMap(\.episodes)) / max(imagesScored(training.validationEpisodes), 1)) {
      case .failed(let message): return .failed(message)
      case .interrupted(let signal, let step): return .interrupted(signal: signal, step: step)
      case .stoppedEarly(let step): progress.line("stopped early at step \(step): no validation improvement in \(settings.patience) validations")
      case .completed: break
      }
      progress.finish()
      progress.line(String(format: "best validation %.2f%% at step %d", 100 * trainer.state.bestValidation, trainer.state.bestStep))
      (model, path) = (try Checkpoint.readModel(trainer.bestURL, expecting: config.model).model, trainer.bestURL.path)
    } else {
      throw UserFacingError("\(config.name) has no training section; evaluate a checkpoint with --eval-only")
    }
    guard let digest = SHA256.hex(ofFile: URL(fileURLWithPath: path)) else { throw UserFacingError("cannot read checkpoint \(path) to hash it; check its permissions") }
    try run.store.setCheckpoint(run: run.id, path: path, hash: digest)
    var results: [ProtocolResult] = []
    for item in data.protocols {
      let (result, episodes) = try item.evaluate(model, progress: progress)
      try run.store.recordResult(run: run.id, result, episodes: episodes)
      try run.store.setTag(run: run.id, key: TagKey.episodes(item.name), value: item.episodeDigest)
      results.append(result)
      progress.line(
        String(
          format: "%@: %.2f%% +- %.2f (95%% CI, %d episodes, %.1f s)", item.name, 100 * result.accuracy, 100 * (result.ciHigh - result.accuracy), result.episodes,
          result.seconds))
    }
    return .completed(results)
  }
  progress.finish()
  switch ending {
  case .completed(let results):
    print(resultsTable(runID: run.id, experiment: config.name, results: results, duration: run.elapsed))
    return 0
  case .failed(let message):
    printError(message)
    return 1
  case .interrupted(let signal, let step):
    printError("interrupted at step \(step); checkpoint saved. Continue with: \(resumeCommand(run.id, options))")
    return 128 + signal
  }
}

/// The training arithmetic: as the file sets it, or for `auto` measured on this machine (a
/// resumed run keeps the answer it started with, so that it ends as it would have).
func trainingPrecision(_ plan: RunPlan, progress: ProgressDisplay) throws -> ConvolutionPrecision {
  guard plan.trains, let settings = plan.config.training else { return .fp32 }
  if let fixed = settings.precision.fixed { return fixed }
  if case .resume(let id) = plan.mode, let recorded = try plan.store().run(id).tags.first(where: { $0.key == "precision.resolved" }),
    let resolved = ConvolutionPrecision(rawValue: recorded.value)
  {
    return resolved
  }
  let images = settings.imagesPerStep
  let probe = PrecisionProbe.resolve(model: plan.config.model, images: images, convolutions: settings.convolutions)
  let times = probe.millisecondsPerStep.sorted { $0.key < $1.key }.map { String(format: "%@ %.1f ms", $0.key, $0.value) }.joined(separator: ", ")
  progress.line("precision auto: \(probe.chosen.rawValue) (\(times) a probe step\(probe.cached ? ", cached in \(PrecisionProbe.cacheURL.path)" : ""))")
  return probe.chosen
}

/// Images a set of episodes scores (support and queries), the unit of evaluation work.
func imagesScored(_ episodes: [ScoringEpisode]) -> Double {
  Double(episodes.reduce(0) { $0 + $1.queries.count + $1.support.joined().count })
}

/// The command that continues run `id` with the options this one used (store, runs folder,
/// data and threads), so that it finds the same store and checkpoints.
func resumeCommand(_ id: String, _ options: RunOptions) -> String {
  var words = ["oneshot-bench", "run", "--resume", id, "--store", options.storePath]
  if options.runsFolder != "runs" { words += ["--runs", options.runsFolder] }
  if let data = options.dataPath { words += ["--data", data] }
  if let threads = options.threads { words += ["--threads", String(threads)] }
  return words.map { $0.contains(" ") ? "'\($0)'" : $0 }.joined(separator: " ")
}

/// The checkpoint of an eval-only run, checked against the experiment's model, and the tags
/// that label the run (mode, and an ensemble's members).
func readEvaluatedCheckpoint(_ path: String, config: ExperimentConfig) throws -> (model: SiameseEnsemble, path: String, tags: [(key: String, value: String)]) {
  guard FileManager.default.fileExists(atPath: path) else {
    throw UserFacingError("checkpoint \(path) not found; pass --checkpoint PATH (a run keeps its best under runs/<run-id>/best.safetensors)")
  }
  let read = try Checkpoint.readModel(URL(fileURLWithPath: path), expecting: config.model)
  var tags: [(key: String, value: String)] = [("mode", "eval-only")]
  if read.model.members.count > 1 {
    let memberRuns = read.model.members.indices.map { read.metadata[Checkpoint.memberKey($0, "run_id")] ?? "unknown" }
    tags += [(Checkpoint.membersKey, String(read.model.members.count)), ("ensemble_runs", memberRuns.joined(separator: ","))]
  }
  return (read.model, path, tags)
}

/// The run's row, committed at once: a new row with the configuration, its parameters and
/// provenance, or the resumed run's row reopened (its wall time goes on from where it stopped).
func beginRun(_ plan: RunPlan, data: ExperimentData, tags: [(key: String, value: String)]) throws -> RunRecording {
  let store = try plan.store()
  let owner = RunRecording.thisProcess
  if case .resume(let id) = plan.mode {
    // Refused while another live process works on the run; the wall time goes on from the
    // last heartbeat of the sitting before (a killed one included).
    let earlier = try store.claimRun(id, owner: owner, isAlive: RunRecording.isAlive)
    return RunRecording(store: store, id: id, started: Date().addingTimeInterval(-earlier), owner: owner)
  }
  let config = plan.config
  let provenance = Provenance.current()
  var run = NewRun(experiment: config.name, configJSON: config.canonicalJSON, configHash: config.hash, params: flattenJSON(config.canonicalJSON))
  run.gitCommit = provenance.gitCommit
  run.gitDirty = provenance.gitDirty
  run.datasetFingerprint = data.datasetFingerprint
  run.host = provenance.host
  run.cpu = provenance.cpu
  run.harnessVersion = harnessVersion
  run.swiftVersion = provenance.swiftVersion
  let id = try store.beginRun(run, owner: owner)
  let folders = data.fingerprints.filter { $0.source != "omniglot" }.map { (key: "dataset.folder", value: "\($0.source) \($0.fingerprint)") }
  for tag in tags + folders { try store.setTag(run: id, key: tag.key, value: tag.value) }
  return RunRecording(store: store, id: id, started: Date(), owner: owner)
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

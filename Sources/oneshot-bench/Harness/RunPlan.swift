import Episodes
import Foundation
import Model
import ResultsStore
import Support

/// Options of `run` that are not in the experiment file.
struct RunOptions {
  var storePath: String
  var threads: Int?
  /// Replaces the experiment file's seed (it becomes part of the recorded configuration).
  var seed: UInt64? = nil
  /// `--set key.path=value` assignments, applied to the file before it is decoded and checked.
  var overrides: [ConfigOverride] = []
  var evalOnlyCheckpoint: String?
  var resumeRunID: String?
  var dataPath: String?
  var runsFolder: String = "runs"
}

/// What `run` will do, decided and checked before any data is read or anything is written:
/// the mode and the resolved configuration (the file's, or the resumed run's stored one, with
/// the command line's overrides), checked the same way on every path.
struct RunPlan {
  enum Mode {
    /// Train from scratch, then evaluate the best checkpoint.
    case fresh
    /// Continue an interrupted run from its last checkpoint.
    case resume(runID: String)
    /// Evaluate a checkpoint (a network or an ensemble) without training.
    case evalOnly(checkpoint: String)
  }

  let mode: Mode
  let config: ExperimentConfig
  let options: RunOptions
  /// The store, already open when resuming (the configuration comes from it).
  private let openedStore: ResultsStore?

  init(configPath: String?, options: RunOptions) throws {
    self.options = options
    var config: ExperimentConfig
    let source: String
    if let resume = options.resumeRunID {
      let store = try ResultsStore(path: options.storePath)
      let id = try store.resolveRunID(resume)
      let detail = try store.run(id)
      guard detail.summary.status != .completed else { throw UserFacingError("run \(id) already completed; nothing to resume") }
      source = "run \(id)'s stored configuration"
      config = try ExperimentConfig.decode(Data(detail.configJSON.utf8), source: source)
      mode = .resume(runID: id)
      openedStore = store
    } else {
      guard let configPath else { throw UserFacingError("give an experiment file (e.g. experiments/vgg105.json) or --resume RUN_ID") }
      source = configPath
      config = try ExperimentConfig.load(configPath, overrides: options.overrides)
      mode = options.evalOnlyCheckpoint.map { .evalOnly(checkpoint: $0) } ?? .fresh
      openedStore = nil
    }
    if let threads = options.threads { config.threads = threads }
    if let seed = options.seed { config.seed = seed }
    try config.check(source: source)
    self.config = config
    if config.training == nil && trains {
      throw ConfigError(file: source, keyPath: "training", message: "missing; a file without a training section can only evaluate a checkpoint (run it with --eval-only)")
    }
  }

  /// An eval-only plan for a configuration built on the command line (`evaluate`).
  init(evaluating config: ExperimentConfig, checkpoint: String, options: RunOptions) throws {
    try config.check(source: "the evaluate command")
    self.config = config
    self.options = options
    mode = .evalOnly(checkpoint: checkpoint)
    openedStore = nil
  }

  /// True when the run trains (fresh or resumed).
  var trains: Bool {
    if case .evalOnly = mode { return false }
    return true
  }

  /// The results store (opened only once the data is known to load, so that a refused run
  /// creates no database).
  func store() throws -> ResultsStore {
    try openedStore ?? ResultsStore(path: options.storePath)
  }

  /// Refuses, before any row is written, a runs folder where checkpoints cannot be written.
  func checkRunsFolder() throws {
    let folder = URL(fileURLWithPath: options.runsFolder)
    let probe = folder.appendingPathComponent(".write-check-\(getpid())")
    do {
      try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
      try Data().write(to: probe)
      try FileManager.default.removeItem(at: probe)
    } catch {
      throw UserFacingError("cannot write checkpoints into \(folder.path) (\((error as NSError).localizedDescription)); choose a writable folder with --runs DIR")
    }
  }

  /// The run's folder of checkpoints.
  func folder(runID: String) -> URL {
    URL(fileURLWithPath: options.runsFolder).appendingPathComponent(runID)
  }
}

/// The data one experiment needs, loaded and checked before anything is written, each part
/// built once: for training, the background split and its pools, the pair sampler and the
/// validation episodes; for evaluation, every protocol with its episodes. Only what the run
/// uses is read (an eval-only run on a folder of images reads no Omniglot archive). An
/// impossible episode spec or a bad image folder fails here.
struct ExperimentData {
  /// What training reads.
  struct Training {
    let background: ImageSplit
    let pools: (training: ClassPool, validation: ClassPool)
    let pairs: PairSampler
    let validationEpisodes: [ScoringEpisode]
  }
  let training: Training?
  let protocols: [PreparedProtocol]
  /// Fingerprints of the data read: Omniglot's archives and each image folder.
  let fingerprints: [(source: String, fingerprint: String)]

  static func load(_ config: ExperimentConfig, dataPath: String?, training settings: TrainingConfig?) throws -> ExperimentData {
    let dataset = OmniglotDataset(root: URL(fileURLWithPath: dataPath ?? config.data.path))
    let size = config.model.inputSize
    // Omniglot splits, read at most once each, only when something uses them.
    var loaded: [OmniglotSplit: ImageSplit] = [:]
    func split(_ which: OmniglotSplit) throws -> ImageSplit {
      if let split = loaded[which] { return split }
      let split = try dataset.load(which, size: size)
      loaded[which] = split
      return split
    }
    var pools: (training: ClassPool, validation: ClassPool)? = nil
    func backgroundPools() throws -> (training: ClassPool, validation: ClassPool) {
      if let pools { return pools }
      let made = try split(.background).trainingAndValidation(validationAlphabets: config.data.validationAlphabets)
      pools = made
      return made
    }
    var training: Training? = nil
    if let settings {
      let background = try split(.background), trainingPools = try backgroundPools()
      let validation = settings.validation
      let sampler = try PairSampler(pool: trainingPools.training, sameAlphabetNegatives: config.data.sameAlphabetNegatives, seed: config.seed)
      if settings.pairing == .batch, let problem = sampler.problemForBatchPairing { throw UserFacingError(problem) }
      training = Training(
        background: background, pools: trainingPools,
        pairs: sampler,
        validationEpisodes: try EpisodeSampler(pool: trainingPools.validation, spec: validation.spec, seed: validation.seed).episodes(count: validation.episodes)
          .map { $0.scoring(in: background) })
    }
    var usesOmniglot = settings != nil
    var folders: [(source: String, fingerprint: String)] = []
    let protocols = try config.evaluation.map { item -> PreparedProtocol in
      switch item.protocolKind {
      case .lake20:
        usesOmniglot = true
        let runs = try LakeRuns.load(from: dataset, size: size)
        return PreparedProtocol(name: item.name, split: "lake20", ways: 20, shots: 1, queries: 1, evaluator: Evaluator(runs: runs), episodes: runs.scoringEpisodes)
      case .episodes:
        var spec = item.spec
        let pool: ClassPool
        switch item.split {
        case "folder":
          let (images, fingerprint) = try FolderDataset(root: URL(fileURLWithPath: item.path ?? "")).load(size: size)
          folders.append((item.path ?? "", fingerprint))
          pool = ClassPool(split: images)
          // Within one group when a group has enough classes, otherwise across groups.
          if spec.alphabetMode == .within && !pool.byAlphabet.contains(where: { $0.classes.count >= spec.ways }) { spec.alphabetMode = .across }
        case "validation":
          usesOmniglot = true
          pool = try backgroundPools().validation
        default:
          usesOmniglot = true
          pool = ClassPool(split: try split(.evaluation))
        }
        let sampler: EpisodeSampler
        do {
          sampler = try EpisodeSampler(pool: pool, spec: spec, seed: item.seed)
        } catch let error as DatasetError {
          throw UserFacingError("protocol \(item.name): \(error)")
        }
        var effective = item
        effective.spec = spec
        return PreparedProtocol(
          name: effective.name, split: pool.name, ways: spec.ways, shots: spec.shots, queries: spec.queries, evaluator: Evaluator(split: pool.split),
          episodes: sampler.episodes(count: item.episodes).map { $0.scoring(in: pool.split) })
      }
    }
    let omniglot = usesOmniglot ? [("omniglot", (try? dataset.fingerprint()) ?? "unknown")] : []
    return ExperimentData(training: training, protocols: protocols, fingerprints: omniglot + folders)
  }

  /// The run's dataset fingerprint: Omniglot's when it read Omniglot, else its image folder's
  /// (several folders: a digest of theirs).
  var datasetFingerprint: String? {
    if let omniglot = fingerprints.first(where: { $0.source == "omniglot" }) { return omniglot.fingerprint }
    if fingerprints.count == 1 { return fingerprints[0].fingerprint }
    return fingerprints.isEmpty ? nil : SHA256.hex(Array(fingerprints.map { "\($0.source)\t\($0.fingerprint)\n" }.joined().utf8))
  }
}

/// One evaluation protocol with its episodes, ready to score.
struct PreparedProtocol {
  let name: String
  /// The split recorded with the result: `lake20`, `evaluation` or `validation`.
  let split: String
  let ways: Int
  let shots: Int
  let queries: Int
  let evaluator: Evaluator
  let episodes: [ScoringEpisode]

  /// The identity of the episodes: SHA-256 over the split and every episode's support and
  /// query images. Two runs with the same digest (and dataset) scored the same trials.
  var episodeDigest: String {
    var text = "\(split)\n"
    for e in episodes {
      text += "\(e.index)|\(e.group ?? "")|\(e.support.map { $0.map(String.init).joined(separator: ",") }.joined(separator: ";"))|"
      text += e.queries.map { "\($0.image):\($0.label)" }.joined(separator: ",") + "\n"
    }
    return SHA256.hex(Array(text.utf8))
  }

  /// Scores `model` on every episode: the result row and one row per episode.
  func evaluate(_ model: SiameseEnsemble, progress: ProgressDisplay) throws -> (result: ProtocolResult, episodes: [EpisodeRow]) {
    progress.update("evaluating \(name): \(episodes.count) episodes...", force: true)
    let summary = try evaluator.evaluate(SiameseScorer(model: model), episodes: episodes) { done, total in
      progress.update("evaluating \(name): \(done)/\(total) episodes")
    }
    let result = ProtocolResult(
      protocolName: name, split: split, ways: ways, shots: shots, queries: queries, episodes: summary.episodes.count, accuracy: summary.accuracy,
      ciLow: summary.accuracy - summary.halfWidth95, ciHigh: summary.accuracy + summary.halfWidth95, seconds: summary.seconds)
    return (result, summary.episodes.map { EpisodeRow(episode: $0.index, alphabet: $0.group, correct: $0.correct, total: $0.total) })
  }
}

/// A run row being written. `recording` ends it completed, failed or interrupted, with its
/// wall time, whatever happens inside (an error marks it failed and is rethrown).
struct RunRecording {
  let store: ResultsStore
  let id: String
  /// When the run started; a resumed run's includes the time spent before the interruption.
  let started: Date
  /// This process, as the run's owner in the store.
  let owner: String

  /// `host:pid` of this process.
  static let thisProcess = "\(ProcessInfo.processInfo.hostName):\(getpid())"

  /// Whether the process `host:pid` still runs: known on this host, unknown (nil) elsewhere.
  static func isAlive(_ owner: String) -> Bool? {
    guard let colon = owner.lastIndex(of: ":"), let pid = pid_t(owner[owner.index(after: colon)...]),
      String(owner[..<colon]) == ProcessInfo.processInfo.hostName
    else { return nil }
    return kill(pid, 0) == 0 || errno == EPERM
  }

  /// The checkpoint a resumed run goes on from (nil for other modes). The run is claimed
  /// first, so a live owner refuses it; if the checkpoint cannot be read the run is released
  /// as it was: interrupted, resumable, its time kept.
  func resumable(_ plan: RunPlan) throws -> Resumable? {
    guard case .resume = plan.mode else { return nil }
    do {
      return try Resumable(plan, runID: id)
    } catch {
      try? store.finishRun(id, status: .interrupted, error: "resume failed: \(error)", durationSeconds: elapsed)
      throw error
    }
  }

  /// Tells the store this process still works on the run, with the wall time so far.
  func heartbeat() throws { try store.heartbeat(id, owner: owner, durationSeconds: elapsed) }

  /// How the work inside `recording` ended.
  enum Ending {
    case completed([ProtocolResult])
    case failed(String)
    case interrupted(signal: Int32, step: Int)
  }

  var elapsed: Double { Date().timeIntervalSince(started) }

  func recording(_ body: () throws -> Ending) throws -> Ending {
    let ending: Ending
    do {
      ending = try body()
    } catch StoreError.leaseLost(let id, let owner) {
      // Another process owns the run now: write nothing more.
      throw StoreError.leaseLost(id: id, owner: owner)
    } catch {
      try? store.finishRun(id, status: .failed, error: "\(error)", durationSeconds: elapsed)
      throw error
    }
    switch ending {
    case .completed: try store.finishRun(id, status: .completed, durationSeconds: elapsed)
    case .failed(let message): try store.finishRun(id, status: .failed, error: message, durationSeconds: elapsed)
    case .interrupted(let signal, let step):
      try store.finishRun(id, status: .interrupted, error: "interrupted by signal \(signal) at step \(step)", durationSeconds: elapsed)
    }
    return ending
  }
}

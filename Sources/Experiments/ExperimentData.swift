import Episodes
import Foundation
import Model
import ResultsStore
import Support

/// The data one experiment needs, loaded and checked before anything is written, each part
/// built once: for training, the background split and its pools, the pair sampler and the
/// validation episodes; for evaluation, every protocol with its episodes. Only what the run
/// uses is read (an eval-only run on a folder of images reads no Omniglot archive). An
/// impossible episode spec or a bad image folder fails here.
package struct ExperimentData {
  /// What training reads.
  package struct Training {
    package let background: ImageSplit
    package let pools: (training: ClassPool, validation: ClassPool)
    package let pairs: PairSampler
    package let validationEpisodes: [ScoringEpisode]
    /// The prototypical objective's training episodes (nil for the pairs objective).
    package let episodes: EpisodeSampler?
  }
  package let training: Training?
  package let protocols: [PreparedProtocol]
  /// Fingerprints of the data read: Omniglot's archives and each image folder.
  package let fingerprints: [(source: String, fingerprint: String)]
  /// The fingerprint of the folder training read (`data.folder`), and what it held out.
  package let trainingFolder: (fingerprint: String, heldOut: [String])?

  package static func load(_ config: ExperimentConfig, dataPath: String?, training settings: TrainingConfig?) throws -> ExperimentData {
    let sources = DataSources(config, dataPath: dataPath)
    let training = try settings.map { try sources.training($0) }
    let protocols = try config.evaluation.map { try sources.prepare($0) }
    return ExperimentData(training: training, protocols: protocols, fingerprints: sources.fingerprints(), trainingFolder: sources.trainingFolder)
  }

  /// Fails, as loading would, when a file or folder the experiment reads is missing: a cheap
  /// check of presence only, for callers that must not write anything before the data is known
  /// to be there (a sweep claims a configuration only then).
  package static func requireFiles(_ config: ExperimentConfig, dataPath: String?, trains: Bool) throws {
    let dataset = OmniglotDataset(root: URL(fileURLWithPath: dataPath ?? config.data.path))
    var needed: [URL] = []
    if config.data.split.isVinyals {
      needed += [dataset.archiveURL(.background), dataset.archiveURL(.evaluation)]
      needed += VinyalsSplit.parts.map { dataset.root.appendingPathComponent(VinyalsSplit.folder).appendingPathComponent($0 + ".txt") }
    }
    if trains {
      if let folder = config.data.folder {
        guard FileManager.default.fileExists(atPath: folder) else {
          throw DatasetError.folderProblem(root: folder, problem: "\(folder) is not a folder; an image folder is laid out as ROOT/<group>/<class>/*.png")
        }
      } else {
        needed.append(dataset.archiveURL(.background))
      }
    }
    for item in config.evaluation {
      if item.protocolKind == .lake20 { needed.append(dataset.runsURL) } else if item.split == "evaluation" { needed.append(dataset.archiveURL(.evaluation)) }
    }
    for url in needed { try dataset.requireFile(url) }
  }

  /// The run's dataset fingerprint: the training folder's when it trained on one, else
  /// Omniglot's when it read Omniglot, else its image folder's (several: a digest of theirs).
  package var datasetFingerprint: String? {
    if let trainingFolder { return trainingFolder.fingerprint }
    if let omniglot = fingerprints.first(where: { $0.source == "omniglot" }) { return omniglot.fingerprint }
    if fingerprints.count == 1 { return fingerprints[0].fingerprint }
    return fingerprints.isEmpty ? nil : SHA256.hex(Array(fingerprints.map { "\($0.source)\t\($0.fingerprint)\n" }.joined().utf8))
  }
}

/// The data an experiment reads, each part read at most once and only when something uses it:
/// Omniglot's splits (and the background split's training and validation pools), Lake's runs,
/// image folders. It remembers what it read, for the run's fingerprints.
private final class DataSources {
  let config: ExperimentConfig
  let dataset: OmniglotDataset
  private var splits: [OmniglotSplit: ImageSplit] = [:]
  private var pools: (training: ClassPool, validation: ClassPool)? = nil
  private var usesOmniglot = false
  private var folders: [(source: String, fingerprint: String)] = []
  /// The training folder's fingerprint and held-out part, once read.
  private(set) var trainingFolder: (fingerprint: String, heldOut: [String])? = nil
  private var folderSplit: ImageSplit? = nil
  private var vinyalsSplit: VinyalsSplit? = nil

  init(_ config: ExperimentConfig, dataPath: String?) {
    self.config = config
    dataset = OmniglotDataset(root: URL(fileURLWithPath: dataPath ?? config.data.path))
  }

  func split(_ which: OmniglotSplit) throws -> ImageSplit {
    usesOmniglot = true
    if let split = splits[which] { return split }
    let split = try dataset.load(which, size: config.model.inputSize, resampling: config.model.resampling)
    splits[which] = split
    return split
  }

  /// The Vinyals split, built from both Omniglot splits at the model's input size.
  func vinyals() throws -> VinyalsSplit {
    if let vinyalsSplit { return vinyalsSplit }
    let made = try VinyalsSplit(root: dataset.root, background: try split(.background), evaluation: try split(.evaluation))
    vinyalsSplit = made
    return made
  }

  /// The split training draws from: Omniglot's background split, or the folder of
  /// `data.folder` (named `background` too, so that its pools draw the same random streams as
  /// Omniglot's: an exported background split trains exactly as the zips do).
  func trainingSplit() throws -> ImageSplit {
    if config.data.split.isVinyals { return try vinyals().trainval }
    guard let folder = config.data.folder else { return try split(.background) }
    if let folderSplit { return folderSplit }
    let (loaded, fingerprint) = try FolderDataset(root: URL(fileURLWithPath: folder)).load(size: config.model.inputSize, name: OmniglotSplit.background.rawValue, resampling: config.model.resampling)
    folderSplit = loaded
    folders.append((folder, fingerprint))
    trainingFolder = (fingerprint, [])
    return loaded
  }

  /// The training split's training and validation pools: Omniglot's validation alphabets, or the
  /// folder's held-out groups (or classes).
  func backgroundPools() throws -> (training: ClassPool, validation: ClassPool) {
    if let pools { return pools }
    let training = try trainingSplit()
    let made: (training: ClassPool, validation: ClassPool)
    if config.data.split == .vinyalsTrainval {
      let v = try vinyals()
      made = (ClassPool(split: v.trainval, name: "vinyals/trainval", classes: v.trainingClasses + v.validationClasses), v.pools.validation)
    } else if config.data.split == .vinyals {
      made = try vinyals().pools
    } else if config.data.folder != nil {
      let held = try HeldOut(
        training, folder: config.data.folder ?? "", groups: config.data.validationGroups, fraction: config.data.validationFraction ?? DataConfig.defaultValidationFraction,
        seed: config.seed)
      trainingFolder?.heldOut = held.names
      made = held.pools
    } else {
      made = try training.trainingAndValidation(validationAlphabets: config.data.validationAlphabets)
    }
    pools = made
    return made
  }

  /// The training split, its pools, the pair sampler and the validation episodes.
  func training(_ settings: TrainingConfig) throws -> ExperimentData.Training {
    let background = try trainingSplit(), pools = try backgroundPools()
    let sampler = try PairSampler(pool: pools.training, sameAlphabetNegatives: config.data.sameAlphabetNegatives, seed: config.seed)
    if settings.pairing == .batch, let problem = sampler.problemForBatchPairing { throw UserFacingError(problem) }
    let validation = settings.validation
    let episodeSampler: EpisodeSampler
    if config.data.folder != nil {
      // As for an evaluation folder: within one held-out group when one has enough classes.
      do {
        episodeSampler = try EpisodeSampler(pool: pools.validation, spec: pools.validation.fitted(validation.spec), seed: validation.seed)
      } catch let error as DatasetError {
        throw UserFacingError(
          "training.validation on the held-out part of \(config.data.folder!) (\(trainingFolder?.heldOut.joined(separator: ", ") ?? "")): \(error); hold out more with data.validationGroups or data.validationFraction, or ask for fewer ways")
      }
    } else {
      episodeSampler = try EpisodeSampler(pool: pools.validation, spec: validation.spec, seed: validation.seed)
    }
    let episodes = episodeSampler.episodes(count: validation.episodes)
    return ExperimentData.Training(
      background: background, pools: pools, pairs: sampler, validationEpisodes: episodes.map { $0.scoring(in: background) }, episodes: try trainingEpisodes(settings, pool: pools.training))
  }

  /// The sampler of the prototypical objective's training episodes, checked against the
  /// training classes (an impossible episode names its key); nil for the pairs objective.
  func trainingEpisodes(_ settings: TrainingConfig, pool: ClassPool) throws -> EpisodeSampler? {
    guard settings.method.trainsOnEpisodes, let spec = settings.episode else { return nil }
    do {
      return try EpisodeSampler(pool: pool, spec: spec, seed: config.seed)
    } catch let error as DatasetError {
      throw UserFacingError("training.episode: \(error) (the training classes are \(pool.name), \(pool.classes.count) classes)")
    }
  }

  /// One protocol with its episodes; an impossible episode spec fails here, naming the protocol.
  func prepare(_ item: ProtocolConfig) throws -> PreparedProtocol {
    if item.protocolKind == .lake20 {
      let runs = try LakeRuns.load(from: dataset, size: config.model.inputSize, resampling: config.model.resampling)
      usesOmniglot = true
      return PreparedProtocol(
        name: item.name, split: "lake20", ways: 20, shots: 1, queries: 1, sequence: "lake20", evaluator: Evaluator(runs: runs), episodes: runs.scoringEpisodes)
    }
    var spec = item.spec
    let pool: ClassPool
    var source = ""
    switch item.split {
    case "folder":
      let (images, fingerprint) = try FolderDataset(root: URL(fileURLWithPath: item.path ?? "")).load(size: config.model.inputSize, resampling: config.model.resampling)
      folders.append((item.path ?? "", fingerprint))
      source = "|folder=\(fingerprint)"
      pool = ClassPool(split: images)
      spec = pool.fitted(spec)
    case "validation":
      pool = try backgroundPools().validation
      if config.data.split.isVinyals {
        source = "|vinyals=\(try vinyals().listsDigest)"
      } else if let folder = trainingFolder {
        source = "|folder=\(folder.fingerprint)|heldOut=\(folder.heldOut.joined(separator: ","))"
      } else {
        source = "|validationAlphabets=\(config.data.validationAlphabets.joined(separator: ","))"
      }
    default:
      if config.data.split.isVinyals {
        pool = try vinyals().testPool
        source = "|vinyals=\(try vinyals().listsDigest)"
      } else {
        pool = ClassPool(split: try split(.evaluation))
      }
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
      name: effective.name, split: pool.name, ways: spec.ways, shots: spec.shots, queries: spec.queries,
      sequence: "\(item.split)|\(spec.canonical)|seed=\(item.seed)\(source)", evaluator: Evaluator(split: pool.split),
      episodes: sampler.episodes(count: item.episodes).map { $0.scoring(in: pool.split) })
  }

  /// Omniglot's fingerprint when anything read it, then each image folder's.
  func fingerprints() -> [(source: String, fingerprint: String)] {
    (usesOmniglot ? [("omniglot", (try? dataset.fingerprint()) ?? "unknown")] : []) + folders
  }
}

/// SIGINT or SIGTERM arrived while a protocol was being scored.
struct EvaluationInterrupted: Error {}

/// One evaluation protocol with its episodes, ready to score.
package struct PreparedProtocol {
  package let name: String
  /// The split recorded with the result: `lake20`, `evaluation` or `validation`.
  package let split: String
  package let ways: Int
  package let shots: Int
  package let queries: Int
  /// What episode i is a pure function of (see `TagKey.sequence`).
  package let sequence: String
  package let evaluator: Evaluator
  package let episodes: [ScoringEpisode]

  /// The identity of the episodes: SHA-256 over the split and every episode's support and
  /// query images. Two runs with the same digest (and dataset) scored the same trials.
  package var episodeDigest: String {
    var text = "\(split)\n"
    for e in episodes {
      text += "\(e.index)|\(e.group ?? "")|\(e.support.map { $0.map(String.init).joined(separator: ",") }.joined(separator: ";"))|"
      text += e.queries.map { "\($0.image):\($0.label)" }.joined(separator: ",") + "\n"
    }
    return SHA256.hex(Array(text.utf8))
  }

  /// Scores `scorer` (a checkpoint's network, an outside scorer) on every episode: the result
  /// row and one row per episode. `alive` is called as the work goes on (the run's heartbeat, at
  /// most every 10 s).
  package func evaluate<Scorer: OneShotScorer>(_ scorer: Scorer, progress: ProgressDisplay, alive: @escaping () -> Void = {}) throws -> (result: ProtocolResult, episodes: [EpisodeRow]) {
    var lastAlive = Date()
    progress.update("evaluating \(name): \(episodes.count) episodes...", force: true)
    var phase = EvaluationPhase.embedding
    var rate = PhaseRate()
    let summary = try evaluator.evaluate(scorer, episodes: episodes) { now, done, total in
      if InterruptFlag.requested { throw EvaluationInterrupted() }
      if now != phase { (phase, rate) = (now, PhaseRate()) }
      let work = rate.text(done: done, total: total, unit: now == .embedding ? "images embedded" : "episodes scored")
      progress.update("evaluating \(name): \(work)", force: done == total)
      if Date().timeIntervalSince(lastAlive) >= 10 {
        alive()
        lastAlive = Date()
      }
    }
    let interval = summary.interval95
    let result = ProtocolResult(
      protocolName: name, split: split, ways: ways, shots: shots, queries: queries, episodes: summary.episodes.count, accuracy: summary.accuracy,
      ciLow: interval.low, ciHigh: interval.high, seconds: summary.seconds)
    return (result, summary.episodes.map { EpisodeRow(episode: $0.index, alphabet: $0.group, correct: $0.correct, total: $0.total) })
  }
}

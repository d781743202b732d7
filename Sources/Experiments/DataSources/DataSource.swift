import Episodes
import Foundation
import Support

// A data source is one file in this folder: where an experiment's training images come from,
// which of their classes validate, and which classes the `evaluation` split's protocols test
// on. `dataSource(for:reader:)` below is the one place that picks a source from the experiment
// file (`data.split`, `data.folder`); nothing else in the harness branches on it. Every source
// reads through one `DataReader`, which reads each archive or folder at most once and
// remembers what it read (the run's data fingerprints).

/// Training, validation and test classes of one kind of data.
protocol DataSource: AnyObject {
  /// The split training draws from (named `background`, so that its pools draw the random
  /// streams Omniglot's background split draws).
  func trainingSplit() throws -> ImageSplit
  /// The training split's training and validation classes.
  func pools() throws -> (training: ClassPool, validation: ClassPool)
  /// The sampler of the validation episodes during training.
  func validationSampler(_ validation: ValidationSettings) throws -> EpisodeSampler
  /// What names the validation classes in a protocol's episode sequence (`TagKey.sequence`).
  func validationIdentity() throws -> String
  /// The classes a protocol of the `evaluation` split draws from, and what names them in its
  /// episode sequence.
  func testClasses() throws -> (pool: ClassPool, identity: String)
  /// Fails, naming the file, when something the source would read is missing (a cheap check of
  /// presence, before anything is written).
  func requireFiles(training: Bool) throws
}

/// The source an experiment file describes.
func dataSource(for config: ExperimentConfig, reader: DataReader) -> any DataSource {
  if config.data.split.isVinyals { return VinyalsSource(reader: reader, trainval: config.data.split == .vinyalsTrainval) }
  if let folder = config.data.folder { return FolderSource(reader: reader, folder: folder) }
  return OmniglotSource(reader: reader)
}

/// Reads Omniglot's archives and image folders at the experiment's input size, each at most once,
/// and remembers what it read.
final class DataReader {
  let config: ExperimentConfig
  let dataset: OmniglotDataset
  private var splits: [OmniglotSplit: ImageSplit] = [:]
  private var vinyalsSplit: VinyalsSplit?
  /// Whether anything read Omniglot (its fingerprint is then the run's).
  private(set) var usesOmniglot = false
  /// Each image folder read, with its fingerprint.
  private(set) var folders: [(source: String, fingerprint: String)] = []
  /// The fingerprint of the folder training read, and what it held out for validation.
  var trainingFolder: (fingerprint: String, heldOut: [String])?

  init(_ config: ExperimentConfig, dataPath: String?) {
    self.config = config
    dataset = OmniglotDataset(root: URL(fileURLWithPath: dataPath ?? config.data.path))
  }

  /// One of Omniglot's splits.
  func split(_ which: OmniglotSplit) throws -> ImageSplit {
    usesOmniglot = true
    if let split = splits[which] { return split }
    let split = try dataset.load(which, size: config.model.inputSize, resampling: config.model.resampling)
    splits[which] = split
    return split
  }

  /// Lake's 20 one-shot runs (Omniglot's, so its fingerprint becomes the run's).
  func lakeRuns() throws -> LakeRuns {
    let runs = try LakeRuns.load(from: dataset, size: config.model.inputSize, resampling: config.model.resampling)
    usesOmniglot = true
    return runs
  }

  /// The Vinyals split, built from both Omniglot splits.
  func vinyals() throws -> VinyalsSplit {
    if let vinyalsSplit { return vinyalsSplit }
    let made = try VinyalsSplit(root: dataset.root, background: try split(.background), evaluation: try split(.evaluation))
    vinyalsSplit = made
    return made
  }

  /// A folder of images as a split named `name`, recorded among the folders read.
  func folder(_ path: String, name: String = "folder") throws -> (split: ImageSplit, fingerprint: String) {
    let (loaded, fingerprint) = try FolderDataset(root: URL(fileURLWithPath: path)).load(size: config.model.inputSize, name: name, resampling: config.model.resampling)
    folders.append((path, fingerprint))
    return (loaded, fingerprint)
  }

  /// Omniglot's fingerprint when anything read it, then each image folder's.
  func fingerprints() -> [(source: String, fingerprint: String)] {
    (usesOmniglot ? [("omniglot", (try? dataset.fingerprint()) ?? "unknown")] : []) + folders
  }
}

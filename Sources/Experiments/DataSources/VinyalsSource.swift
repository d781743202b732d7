import Episodes
import Foundation

/// The literature's split (Vinyals et al. 2016, as Snell et al. distribute it): both Omniglot
/// splits pooled, each character in four rotations as four classes, 1,028 / 172 / 423 training /
/// validation / test characters (`data.split: vinyals`); with `vinyals-trainval`, training on
/// the training and validation characters together, as Snell et al.'s final models did.
final class VinyalsSource: DataSource {
  let reader: DataReader
  /// Whether training also draws on the validation characters.
  let trainval: Bool

  init(reader: DataReader, trainval: Bool) {
    self.reader = reader
    self.trainval = trainval
  }

  func trainingSplit() throws -> ImageSplit { try reader.vinyals().trainval }

  func pools() throws -> (training: ClassPool, validation: ClassPool) {
    let v = try reader.vinyals()
    guard trainval else { return v.pools }
    return (ClassPool(split: v.trainval, name: "vinyals/trainval", classes: v.trainingClasses + v.validationClasses), v.pools.validation)
  }

  func validationSampler(_ validation: ValidationSettings) throws -> EpisodeSampler {
    try EpisodeSampler(pool: try pools().validation, spec: validation.spec, seed: validation.seed)
  }

  func validationIdentity() throws -> String { "|vinyals=\(try reader.vinyals().listsDigest)" }

  func testClasses() throws -> (pool: ClassPool, identity: String) {
    let v = try reader.vinyals()
    return (v.testPool, "|vinyals=\(v.listsDigest)")
  }

  func requireFiles(training: Bool) throws {
    let dataset = reader.dataset
    let needed = [dataset.archiveURL(.background), dataset.archiveURL(.evaluation)]
      + VinyalsSplit.parts.map { dataset.root.appendingPathComponent(VinyalsSplit.folder).appendingPathComponent($0 + ".txt") }
    for url in needed { try dataset.requireFile(url) }
  }
}

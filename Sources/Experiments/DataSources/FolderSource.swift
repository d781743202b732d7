import Episodes
import Foundation
import Support

/// A folder of your own images (`data.folder`: ROOT/<group>/<class>/*.png|jpg): training on it,
/// validation on the groups it holds out (`data.validationGroups`, or a fraction of them, or of
/// its classes), and the same evaluation split as Omniglot's source for protocols that name it.
final class FolderSource: DataSource {
  let reader: DataReader
  let folder: String
  private var split: ImageSplit?
  private var cachedPools: (training: ClassPool, validation: ClassPool)?

  init(reader: DataReader, folder: String) {
    self.reader = reader
    self.folder = folder
  }

  /// Named `background`, so that its pools draw the same random streams as Omniglot's: an
  /// exported background split trains exactly as the zips do.
  func trainingSplit() throws -> ImageSplit {
    if let split { return split }
    let (loaded, fingerprint) = try reader.folder(folder, name: OmniglotSplit.background.rawValue)
    split = loaded
    reader.trainingFolder = (fingerprint, [])
    return loaded
  }

  func pools() throws -> (training: ClassPool, validation: ClassPool) {
    if let cachedPools { return cachedPools }
    let data = reader.config.data
    let held = try HeldOut(
      try trainingSplit(), folder: folder, groups: data.validationGroups, fraction: data.validationFraction ?? DataConfig.defaultValidationFraction, seed: reader.config.seed)
    reader.trainingFolder?.heldOut = held.names
    cachedPools = held.pools
    return held.pools
  }

  /// As for an evaluation folder: within one held-out group when one has enough classes.
  func validationSampler(_ validation: ValidationSettings) throws -> EpisodeSampler {
    let pool = try pools().validation
    do {
      return try EpisodeSampler(pool: pool, spec: pool.fitted(validation.spec), seed: validation.seed)
    } catch let error as DatasetError {
      throw UserFacingError(
        "training.validation on the held-out part of \(folder) (\(reader.trainingFolder?.heldOut.joined(separator: ", ") ?? "")): \(error); hold out more with data.validationGroups or data.validationFraction, or ask for fewer ways")
    }
  }

  func validationIdentity() throws -> String {
    _ = try pools()
    guard let held = reader.trainingFolder else { return "" }
    return "|folder=\(held.fingerprint)|heldOut=\(held.heldOut.joined(separator: ","))"
  }

  func testClasses() throws -> (pool: ClassPool, identity: String) { (ClassPool(split: try reader.split(.evaluation)), "") }

  func requireFiles(training: Bool) throws {
    guard training else { return }
    guard FileManager.default.fileExists(atPath: folder) else {
      throw DatasetError.folderProblem(root: folder, problem: "\(folder) is not a folder; an image folder is laid out as ROOT/<group>/<class>/*.png")
    }
  }
}

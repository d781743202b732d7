import Episodes
import Foundation

/// Omniglot as Lake et al. split it (the default): training on the background split's
/// alphabets less `data.validationAlphabets`, which validate; the evaluation split's 20
/// alphabets are the test set.
final class OmniglotSource: DataSource {
  let reader: DataReader
  private var cachedPools: (training: ClassPool, validation: ClassPool)?

  init(reader: DataReader) { self.reader = reader }

  func trainingSplit() throws -> ImageSplit { try reader.split(.background) }

  func pools() throws -> (training: ClassPool, validation: ClassPool) {
    if let cachedPools { return cachedPools }
    let made = try trainingSplit().trainingAndValidation(validationAlphabets: reader.config.data.validationAlphabets)
    cachedPools = made
    return made
  }

  func validationSampler(_ validation: ValidationSettings) throws -> EpisodeSampler {
    try EpisodeSampler(pool: try pools().validation, spec: validation.spec, seed: validation.seed)
  }

  func validationIdentity() throws -> String { "|validationAlphabets=\(reader.config.data.validationAlphabets.joined(separator: ","))" }

  func testClasses() throws -> (pool: ClassPool, identity: String) { (ClassPool(split: try reader.split(.evaluation)), "") }

  func requireFiles(training: Bool) throws {
    if training { try reader.dataset.requireFile(reader.dataset.archiveURL(.background)) }
  }
}

import Experiments
import ArgumentParser
import Episodes
import Foundation
import Model
import Reports
import Support

/// `oneshot-bench predict A.png B.png ...`: the reference project's predict script, for many
/// images in one process: a similarity, a matrix of them, or a folder ranked against a query.
struct PredictCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "predict",
    abstract: "Similarity of images (PNG or JPEG, any size or colour): two images, a matrix of several, or a folder ranked against a query.",
    discussion: """
      The number is sigmoid(logit) of the Siamese network (for an ensemble, of the members' mean logit), in [0, 1]. \
      It ranks pairs well (higher: more likely the same character) but it is not a calibrated probability: \
      an image against itself can score below another drawing of the same character, and the scale differs between models. \
      A prototypical network (model.similarity euclidean) has no head: for it the number is the squared Euclidean distance of \
      the two embeddings (0 for an image against itself; lower: more alike), and a ranking puts the nearest first.
      """)

  @Argument(help: "Images (PNG or JPEG). Two: one similarity. More: the matrix of every pair.") var images: [String] = []
  @Option(help: "Rank the images of --support against this one.") var query: String?
  @Option(help: "A folder whose images (.png, .jpg, .jpeg, searched recursively) are ranked against --query.") var support: String?
  @Option(help: "Output of a matrix or a ranking: table or csv.") var format: Format = .table
  @Option(help: "Checkpoint (a network or an ensemble).") var checkpoint: String = shippedModelPath
  @Option(help: "Threads.") var threads: Int = 2

  enum Format: String, ExpressibleByArgument, CaseIterable { case table, csv }

  func validate() throws {
    if (query == nil) != (support == nil) { throw ValidationError("--query and --support go together") }
    if query != nil && !images.isEmpty { throw ValidationError("give images, or --query with --support, not both") }
    if query == nil && images.count < 2 { throw ValidationError("give at least two images, or --query Q.png --support DIR") }
    if !(1...256).contains(threads) { throw ValidationError("--threads must be between 1 and 256") }
    if images.count > PredictCommand.maximumMatrixImages {
      throw ValidationError("\(images.count) images make a \(images.count) x \(images.count) matrix; at most \(PredictCommand.maximumMatrixImages) images, or rank a folder: --query Q.png --support DIR")
    }
  }

  /// The most images of a similarity matrix (a million printed cells).
  static let maximumMatrixImages = 1_000
  /// The most images of a `--support` folder ranked against one query.
  static let maximumSupportImages = 20_000
  /// Memory for the pair features of one block of matrix rows (ONESHOT_PREDICT_BLOCK_BYTES
  /// sets it, for tests of the blocking).
  static var blockBytes: Int {
    ProcessInfo.processInfo.environment["ONESHOT_PREDICT_BLOCK_BYTES"].flatMap(Int.init).flatMap { $0 > 0 ? $0 : nil } ?? 256 << 20
  }

  func run() throws {
    ComputeThreads.set(threads)
    guard FileManager.default.fileExists(atPath: checkpoint) else { throw UserFacingError.checkpointNotFound(checkpoint) }
    let read = try Checkpoint.readModel(URL(fileURLWithPath: checkpoint))
    let model = read.model
    let method = FewShotMethods.method(ofCheckpoint: read.metadata, model: model)
    let scorer = NetworkScorer(model: model, method: method)
    let size = model.config.inputSize
    /// The printed number, as the method defines it (the sigmoid of the ensemble's mean logit, or
    /// the members' mean squared distance, which `NetworkEnsemble.score` has already averaged).
    let similarity = { (score: Double) in method.pairValue(score: score) }
    /// Each image's embedding, read and resized like the training data.
    func embed(_ paths: [String]) throws -> [[Float]] {
      var ink: [UInt8] = []
      for path in paths {
        if let problem = UserFile.problem(path, maximumBytes: FolderDataset.maximumFileBytes) { throw UserFacingError("image \(path) \(problem); give PNG or JPEG files") }
        guard let data = FileManager.default.contents(atPath: path) else { throw UserFacingError("cannot read image \(path); check the path") }
        ink += try GrayImage.decode([UInt8](data), name: path).resized(width: size, height: size, resampling: model.config.resampling).ink
      }
      return try ink.withUnsafeBufferPointer { try scorer.embed($0, count: paths.count, size: size) }
    }
    if let query, let support {
      let root = URL(fileURLWithPath: support)
      guard let walker = FileManager.default.enumerator(atPath: root.path) else { throw UserFacingError("cannot read folder \(support); check the path") }
      let files = walker.compactMap { $0 as? String }.filter { [".png", ".jpg", ".jpeg"].contains(where: $0.lowercased().hasSuffix) && !$0.split(separator: "/").contains { $0.hasPrefix(".") } }
        .sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }
      guard !files.isEmpty else { throw UserFacingError("\(support) holds no .png, .jpg or .jpeg images to rank") }
      guard files.count <= PredictCommand.maximumSupportImages else {
        throw UserFacingError("\(support) holds \(files.count) images, more than the \(PredictCommand.maximumSupportImages) predict ranks at once; rank a smaller folder, or score it as episodes with `evaluate --folder`")
      }
      let embedded = try embed([query] + files.map { root.appendingPathComponent($0).path })
      let logits = try scorer.similarities(queries: [embedded[0]], support: Array(embedded.dropFirst()))[0]
      // The scores rank the closest first whatever the printed value's direction.
      let ranked = zip(files, logits).sorted { $0.1 != $1.1 ? $0.1 > $1.1 : $0.0.utf8.lexicographicallyPrecedes($1.0.utf8) }
      let rows = ranked.enumerated().map { [String($0.offset + 1), String(format: "%.6f", similarity($0.element.1)), $0.element.0] }
      emit(render(["rank", method.pairValueName.heading, "image"], rows))
      return
    }
    let embedded = try embed(images)
    // Row blocks whose pair features fit in blockBytes: 1,000 images at once would build a
    // million pair features (gigabytes); block by block the peak stays bounded.
    let width = max(1, embedded[0].count) * MemoryLayout<Float>.size * 2
    let rowsPerBlock = max(1, PredictCommand.blockBytes / (width * embedded.count))
    var matrix: [[Double]] = []
    for start in stride(from: 0, to: embedded.count, by: rowsPerBlock) {
      let rows = Array(embedded[start..<min(embedded.count, start + rowsPerBlock)])
      matrix += try scorer.similarities(queries: rows, support: embedded).map { $0.map(similarity) }
    }
    if images.count == 2 && format == .table {
      print(String(format: "%.6f", matrix[0][1]))
      return
    }
    emit(render([""] + images, images.indices.map { i in [images[i]] + matrix[i].map { String(format: "%.6f", $0) } }))
  }

  func emit(_ text: String) { print(text, terminator: format == .csv ? "\r\n" : "\n") }

  func render(_ header: [String], _ rows: [[String]]) -> String {
    // RFC 4180 as `report --format csv`: CRLF line ends, the last one too (`emit` writes it).
    // Bytes, not Characters: "\r\n" is one Character, and dropping two cut the last row's end.
    format == .csv ? String(decoding: csvDocument(header, rows).utf8.dropLast(2), as: UTF8.self) : textTable(header, rows)
  }
}

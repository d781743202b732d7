import ArgumentParser
import Episodes
import Foundation
import Model

/// `oneshot-bench predict A.png B.png`: the reference project's predict script: the
/// similarity of two images in [0, 1] (for an ensemble checkpoint, the sigmoid of the members'
/// mean logit).
struct PredictCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "predict", abstract: "Similarity (probability of the same character) of two images, any PNG size or colour.")

  @Argument(help: "First image (PNG).") var first: String
  @Argument(help: "Second image (PNG).") var second: String
  @Option(help: "Checkpoint (default: \(shippedModelPath)).") var checkpoint: String = shippedModelPath
  @Option(help: "Threads.") var threads: Int = 2

  func run() throws {
    ComputeThreads.set(threads)
    guard FileManager.default.fileExists(atPath: checkpoint) else {
      throw UserFacingError("checkpoint \(checkpoint) not found; pass --checkpoint PATH (runs keep theirs under runs/<run-id>/best.safetensors)")
    }
    let model = try Checkpoint.readModel(URL(fileURLWithPath: checkpoint)).model
    let size = model.config.inputSize
    func load(_ path: String) throws -> Tensor {
      guard let data = FileManager.default.contents(atPath: path) else { throw UserFacingError("cannot read image \(path)") }
      let image = try GrayImage.decodePNG([UInt8](data), name: path).resized(width: size, height: size)
      return image.ink.withUnsafeBufferPointer { networkInput($0, size: size) }
    }
    let a = model.embed(try load(first)), b = model.embed(try load(second))
    let logit = model.score(a, b)[0]
    print(String(format: "%.6f", sigmoid(logit)))
  }
}

/// Where the shipped model lives; `predict` and `run --eval-only` find it by default.
let shippedModelPath = "models/omniglot-siamese.safetensors"

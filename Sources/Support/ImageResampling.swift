/// How an image is brought to the network's input size; part of a model's configuration
/// (`model.resampling`), so that every image a network sees (training, episodes, Lake's runs,
/// a folder, `predict`) is resampled the same way, and a checkpoint carries the choice.
public enum ImageResampling: String, Codable, Sendable, CaseIterable {
  /// Area averaging when shrinking (each output pixel is the mean of the input area it covers,
  /// as OpenCV's INTER_AREA: thin strokes become grey instead of disappearing), bilinear when
  /// enlarging. The default.
  case area
  /// Nearest neighbour as PIL's `Image.resize` (its default filter before Pillow 7.0, used by
  /// Snell et al.'s Omniglot loader): output pixel x takes input pixel
  /// floor((x + 0.5) * inputSide / outputSide); a binary image stays binary.
  case nearest
}

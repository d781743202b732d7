// The contract every layer of the network keeps:
// - `forward` reads the parameters, never changes them, and returns its output with a cache;
// - `backward` takes that cache and the gradient of the output, accumulates the gradients of
//   its parameters into the store and returns the gradient of its input;
// - training-only state (batch norm's running estimates) changes only through
//   `updateRunningEstimates`, which the network calls in a training forward and nowhere else.
// So inference is non-mutating and one cache type serves every layer.

/// How a forward pass runs.
public struct ForwardContext: Sendable {
  /// Training mode: batch norm normalises with the batch statistics (and the caches carry them).
  public var training: Bool
  /// The convolutions' arithmetic.
  public var precision: ConvolutionPrecision
  /// The convolutions' implementation.
  public var algorithm: ConvolutionAlgorithm
  /// Whether outputs may stay in the layouts oneDNN's primitives chose (training: convolution,
  /// batch norm and pooling then run on oneDNN back to back, and their gradients stay there
  /// too); otherwise every layer returns plain tensors and batch norm and pooling run the
  /// Swift kernels, the fixed arithmetic of every evaluation.
  public var keepsLayouts: Bool
  /// With `keepsLayouts`: a batch norm with ReLU followed by max pooling runs as one fused
  /// layer where its input's layout allows (NormalizationPooling.swift).
  public var fusesNormalizationPooling: Bool = true

  /// A context; inference in fp32 on oneDNN's direct primitives, plain tensors, unless told otherwise.
  public init(training: Bool = false, precision: ConvolutionPrecision = .fp32, algorithm: ConvolutionAlgorithm = .direct, keepsLayouts: Bool = false) {
    self.training = training
    self.precision = precision
    self.algorithm = algorithm
    self.keepsLayouts = keepsLayouts
  }

  /// Inference, fp32, direct convolutions: the arithmetic of every recorded evaluation.
  public static let inference = ForwardContext()
}

/// What a layer's backward needs from its forward.
public struct LayerCache: Sendable {
  /// The layer's input.
  public let input: Tensor
  /// The layer's output (after a fused activation).
  public let output: Tensor
  /// What some layers keep besides input and output.
  let saved: Saved

  /// Layer-specific state of one forward pass.
  enum Saved: Sendable {
    case nothing
    /// Conv2D: the oneDNN primitives the forward ran on (backward reuses them); nil: im2col.
    /// With `keepsLayouts` the gradients stay in oneDNN's layouts too; `keptInput` holds the
    /// input as the primitives read it when it had to be converted (empty otherwise).
    case primitives(Conv2D.Primitives?, keepsLayouts: Bool, keptInput: [UInt8])
    /// BatchNorm2D (Swift kernel): the statistics it normalised with, and the batch variance in training.
    case statistics(mean: [Float], inverseStd: [Float], batchVariance: [Float]?)
    /// BatchNorm2D on oneDNN (training): the batch's mean and biased variance, the ReLU mask.
    case normalization(OneDNNHandle, mean: [Float], variance: [Float], workspace: [UInt8])
    /// MaxPool2D (Swift kernel): the winning position (0...3) in each window.
    case argmax([UInt8])
    /// MaxPool2D on oneDNN: the primitive's record of each window's winner.
    case pooling(OneDNNHandle, workspace: [UInt8])
    /// BatchNorm2D fused with the MaxPool2D after it (NormalizationPooling.swift).
    case normalizationPooled(NormalizationPooling)
    /// MaxPool2D whose work the batch norm before it did: backward passes the gradient through.
    case pooledByNormalization
  }

  init(input: Tensor, output: Tensor, saved: Saved = .nothing) {
    self.input = input
    self.output = output
    self.saved = saved
  }
}

/// A cached oneDNN primitive handle (batch norm, pooling): lives for the process.
struct OneDNNHandle: @unchecked Sendable {
  let pointer: OpaquePointer
}

/// One layer of the network.
public protocol Layer: Sendable {
  /// The output for `x` and what backward needs.
  func forward(_ x: Tensor, store: ParameterStore, context: ForwardContext) -> (output: Tensor, cache: LayerCache)

  /// Accumulates the parameters' gradients into `store` and returns dL/dx. With
  /// `needInputGradient` false (the first layer) a layer may skip dL/dx and return an empty tensor.
  func backward(_ dOutput: Tensor, cache: LayerCache, store: inout ParameterStore, needInputGradient: Bool) -> Tensor

  /// Training-only state changes after a training forward (batch norm's running estimates).
  func updateRunningEstimates(_ cache: LayerCache, store: inout ParameterStore)
}

extension Layer {
  /// Most layers keep no running estimates.
  public func updateRunningEstimates(_ cache: LayerCache, store: inout ParameterStore) {}

  /// dL/dx, always computed.
  public func backward(_ dOutput: Tensor, cache: LayerCache, store: inout ParameterStore) -> Tensor {
    backward(dOutput, cache: cache, store: &store, needInputGradient: true)
  }
}

extension Tensor {
  /// A tensor with no elements: the input gradient a layer returns when none was asked for.
  public static let empty = Tensor(shape: [0], data: [])
}

// Where a tensor's values sit in memory. Plain is row-major in the order of the shape (NCHW for
// images): what every Swift kernel, the checkpoints and PyTorch read. During training the
// backbone's activations and gradients may instead stay in the blocked layout oneDNN's
// primitives chose (e.g. nChw16c: channels in blocks of 16 innermost), so that no layer
// reorders between convolution, batch norm, ReLU and pooling; `Tensor.plain()` converts back.

import CConvolution
import Foundation

/// A tensor's memory layout: plain, or one of oneDNN's (interned, so equal layouts compare equal).
public struct TensorLayout: Equatable, @unchecked Sendable, CustomStringConvertible {
  /// The oneDNN layout; nil when plain.
  let handle: OpaquePointer?

  /// Row-major in the order of the shape.
  public static let plain = TensorLayout(nil)

  /// The layout behind a oneDNN layout handle (plain NCHW float maps to `.plain`).
  init(_ handle: OpaquePointer?) {
    if let handle, clayout_is_plain(handle) == 0 {
      self.handle = handle
    } else {
      self.handle = nil
    }
  }

  /// Whether the values are row-major in the order of the shape.
  public var isPlain: Bool { handle == nil }

  /// "plain", or oneDNN's name of the layout, e.g. "nChw16c".
  public var description: String { handle.map { String(cString: clayout_name($0)) } ?? "plain" }

  /// The oneDNN layout of a 4-D tensor of `shape` in this layout.
  func handle(for shape: [Int]) -> OpaquePointer {
    if let handle { return handle }
    precondition(shape.count == 4, "a oneDNN layout needs a 4-D shape, got \(shape)")
    guard let plain = clayout_plain(Int32(shape[0]), Int32(shape[1]), Int32(shape[2]), Int32(shape[3])) else {
      preconditionFailure("oneDNN could not describe a plain tensor of shape \(shape)")
    }
    return plain
  }
}

extension Tensor {
  /// The same values in plain row-major order (itself when already plain).
  public func plain() -> Tensor {
    guard let from = layout.handle else { return self }
    var out = Tensor(uninitialized: shape)
    let to = TensorLayout.plain.handle(for: shape)
    let status = data.withUnsafeBufferPointer { src in
      out.data.withUnsafeMutableBufferPointer { dst in clayout_reorder(from, src.baseAddress!, to, dst.baseAddress!) }
    }
    precondition(status == 0, "oneDNN could not reorder a \(shape) tensor from \(layout) to plain")
    return out
  }

  /// The same values in `target` (itself when already there).
  func reordered(to target: TensorLayout) -> Tensor {
    guard target != layout else { return self }
    guard target.handle != nil else { return plain() }
    var out = Tensor(uninitialized: shape)
    out.layout = target
    precondition(out.data.count == clayout_count(target.handle(for: shape)), "a \(shape) tensor in \(target) needs padding")
    let status = data.withUnsafeBufferPointer { src in
      out.data.withUnsafeMutableBufferPointer { dst in clayout_reorder(layout.handle(for: shape), src.baseAddress!, target.handle(for: shape), dst.baseAddress!) }
    }
    precondition(status == 0, "oneDNN could not reorder a \(shape) tensor from \(layout) to \(target)")
    return out
  }
}

/// Reasons noted once each (a set kept in order, safe across threads), for the trainer to print
/// and record and `bench` to print.
public final class ReasonLog: @unchecked Sendable {
  private let lock = NSLock()
  private var recorded: [String] = []

  init() {}

  /// Why a layer ran its Swift kernel on plain tensors in training instead of oneDNN's primitive
  /// (oneDNN could not build it for that layout). Empty when every layer ran on oneDNN.
  public static let oneDNNFallbacks = ReasonLog()

  /// Why a batch norm and the pooling after it ran as two oneDNN primitives although fusing was
  /// asked for (their input's layout is not one the fused kernels take), so that
  /// `fusion.resolved: fused` is never read as "fused everywhere" when it was not.
  public static let unfusedPairs = ReasonLog()

  /// Notes a reason (kept once).
  func note(_ reason: String) {
    lock.withLock {
      if !recorded.contains(reason) { recorded.append(reason) }
    }
  }

  /// Every reason noted so far in this process.
  public var reasons: [String] { lock.withLock { recorded } }
}

/// The text of a C message buffer.
func messageText(_ buffer: [CChar]) -> String {
  String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

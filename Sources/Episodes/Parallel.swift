import Foundation

/// Per-index results written from concurrent workers and read back in index order.
final class ConcurrentResults<Value>: @unchecked Sendable {
  private var slots: [Result<Value, any Error>?]
  private let lock = NSLock()

  init(count: Int) { slots = Array(repeating: nil, count: count) }

  func set(_ index: Int, _ result: Result<Value, any Error>) {
    lock.lock()
    slots[index] = result
    lock.unlock()
  }

  /// The values in index order, or the error of the lowest failing index.
  func values() throws -> [Value] {
    try slots.map { slot in
      guard let slot else { preconditionFailure("ConcurrentResults: a slot was never set") }
      return try slot.get()
    }
  }
}

/// A pointer handed to concurrent workers that write disjoint parts of one buffer.
struct UncheckedPointer<Element>: @unchecked Sendable {
  let pointer: UnsafeMutablePointer<Element>
  init(_ pointer: UnsafeMutablePointer<Element>) { self.pointer = pointer }
}

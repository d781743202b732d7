import Foundation
import Reports

/// The time left of a training run, as the progress line shows it: the steps to go at a moving
/// average of recent step times (validations excluded), then the validations still to come and
/// the evaluation after training, both at the last validation's speed. The first steps (oneDNN
/// builds its primitives, caches warm up) are left out of the average, so a one-minute job does
/// not start by promising half an hour.
struct TimeLeft {
  let totalSteps: Int
  let validateEvery: Int
  /// The evaluation after training, in validations (images scored).
  let evaluationWork: Double
  /// Steps timed before the average is trusted.
  static let warmUpSteps = 3
  private var stepsTimed = 0
  private var stepSeconds: Double? = nil
  private var validationSeconds: Double? = nil

  init(totalSteps: Int, validateEvery: Int, evaluationWork: Double) {
    self.totalSteps = totalSteps
    self.validateEvery = validateEvery
    self.evaluationWork = evaluationWork
  }

  mutating func stepTook(_ seconds: Double) {
    stepsTimed += 1
    guard stepsTimed > TimeLeft.warmUpSteps else { return }
    stepSeconds = stepSeconds.map { 0.95 * $0 + 0.05 * seconds } ?? seconds
  }

  mutating func validationTook(_ seconds: Double) { validationSeconds = seconds }

  /// `12m30s`, with what is not yet measured said instead of guessed.
  func text(atStep step: Int) -> String {
    guard let stepSeconds else { return "measuring" }
    // Every multiple of `validateEvery` still to come, and the last step when it is not one.
    let validationsLeft = Double(totalSteps / validateEvery - step / validateEvery + (totalSteps % validateEvery == 0 ? 0 : 1))
    let seconds = Double(totalSteps - step) * stepSeconds + (validationSeconds ?? 0) * (validationsLeft + evaluationWork)
    return validationSeconds == nil ? formatDuration(seconds) + " + validation and evaluation" : formatDuration(seconds)
  }
}

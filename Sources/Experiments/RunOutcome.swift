import ResultsStore

/// How a run ended: the one vocabulary for a run's end, from the trainer to the process's exit
/// code. `exitCode` is the only place the numbers are written.
package enum RunOutcome {
  /// Trained (or not) and scored on every protocol.
  case completed([ProtocolResult])
  /// Training failed (a non-finite loss); the run is marked failed with the message.
  case failed(String)
  /// SIGINT or SIGTERM: the last checkpoint is saved and the run can be resumed.
  case interrupted(signal: Int32, step: Int)
  /// SIGINT or SIGTERM while scoring the protocols: the results so far are kept, the run is
  /// interrupted (a trained run's resume scores it again from its best checkpoint).
  case interruptedEvaluating(signal: Int32)

  /// 0 completed, 1 failed, 128 + the signal when interrupted (130 SIGINT, 143 SIGTERM).
  package var exitCode: Int32 {
    switch self {
    case .completed: return 0
    case .failed: return 1
    case .interrupted(let signal, _), .interruptedEvaluating(let signal): return 128 + signal
    }
  }

  /// The run's status in the store.
  package var status: RunStatus {
    switch self {
    case .completed: return .completed
    case .failed: return .failed
    case .interrupted, .interruptedEvaluating: return .interrupted
    }
  }

  /// The error recorded with a run that did not complete.
  package var error: String? {
    switch self {
    case .completed: return nil
    case .failed(let message): return message
    case .interrupted(let signal, let step): return "interrupted by signal \(signal) at step \(step)"
    case .interruptedEvaluating(let signal): return "interrupted by signal \(signal) while evaluating"
    }
  }

  package var isInterrupted: Bool {
    switch self {
    case .interrupted, .interruptedEvaluating: return true
    default: return false
    }
  }
}

/// SIGINT or SIGTERM before the run's row was written (while reading data): the command ends
/// with 128 + the signal and nothing recorded.
package struct InterruptedBeforeRecording: Error, CustomStringConvertible {
  package let signal: Int32
  /// What was going on, and what became of it.
  package var detail = "while reading data; nothing was recorded: run the command again when you are ready"
  package var exitCode: Int32 { 128 + signal }
  package var description: String { "interrupted (signal \(signal)) \(detail)" }

  package init(signal: Int32) { self.signal = signal }
  package init(signal: Int32, detail: String) {
    self.signal = signal
    self.detail = detail
  }
}

/// The store could not be written for now while a run was recorded: an outage longer than
/// `ONESHOT_STORE_OUTAGE_SECONDS`, or SIGINT/SIGTERM while waiting one out. The run's row is
/// left as it was (never `failed`), its last checkpoint stands, and it resumes exactly from
/// there (a resubmitted sweep resumes it). Exit 75 (EX_TEMPFAIL: a scheduler retries the task),
/// or 128 + the signal.
package struct RunLeftResumable: Error, CustomStringConvertible {
  package let reason: StoreError
  package let runID: String
  package let resumeCommand: String
  package var exitCode: Int32 {
    if case .stoppedWaiting(_, let signal) = reason { return 128 + signal }
    return 75
  }
  package var description: String {
    "\(reason); run \(runID) is left resumable from its last checkpoint. Continue with: \(resumeCommand)"
  }
}

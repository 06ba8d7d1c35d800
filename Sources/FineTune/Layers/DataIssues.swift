import Foundation

/// A problem with the data a layer was given (as opposed to a programming error), which a
/// training loop can turn into a thrown error or a skipped batch instead of a crash.
public enum DataIssue: Error, Equatable, Sendable, CustomStringConvertible {
    /// An index outside an embedding table (a token id beyond the vocabulary).
    case indexOutOfRange(layer: String, index: Int, count: Int)
    /// A layer that needs more than one value per channel (BatchNorm with batch statistics)
    /// got a batch with one.
    case singleValuePerChannel(layer: String, shape: [Int])

    public var description: String {
        switch self {
        case let .indexOutOfRange(layer, index, count):
            return "\(layer): index \(index) is out of range 0..<\(count)"
        case let .singleValuePerChannel(layer, shape):
            return "\(layer): expected more than 1 value per channel when training, got input \(shape)"
        }
    }
}

/// Collects ``DataIssue``s raised by layers while it is installed (``Trainer`` installs one
/// around each forward pass). Without one installed, a data issue stops the process with its
/// description, as a shape error does.
final class DataIssueRecorder: @unchecked Sendable {
    @TaskLocal static var current: DataIssueRecorder?
    private(set) var issues: [DataIssue] = []

    /// Records `issue` when a recorder is installed and returns true (the layer then goes on
    /// with a harmless substitute); stops the process otherwise.
    static func report(_ issue: DataIssue) {
        guard let recorder = current else { preconditionFailure(issue.description) }
        recorder.issues.append(issue)
    }

    /// Runs `body` with a fresh recorder installed and returns its result and the issues raised.
    static func collecting<R>(_ body: () -> R) -> (result: R, issues: [DataIssue]) {
        let recorder = DataIssueRecorder()
        let result = $current.withValue(recorder) { body() }
        return (result, recorder.issues)
    }
}

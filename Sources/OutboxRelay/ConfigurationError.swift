/// A setting the relay cannot run with: a bad flag value, URL or table name. The message names
/// the problem and never contains a password.
public struct ConfigurationError: Error, Sendable, Equatable, CustomStringConvertible {
    public let message: String

    public init(_ message: String) {
        self.message = message
    }

    public var description: String { message }
}

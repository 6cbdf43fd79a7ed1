internal import CLibPQ
import Foundation
import OutboxRelay

/// What libpq makes of a connection string (`key=value` pairs or a `postgresql://` URL), checked
/// before any connection is tried.
public enum PostgresConnectionString {
    /// Checks that libpq accepts `connectionString`: its syntax and its option values (such as
    /// `sslmode`), without waiting for a server. The error never repeats a password.
    public static func validate(connectionString: String) throws(PostgresError) {
        let redactor = SecretRedactor(connectionString: connectionString)
        var errorMessage: UnsafeMutablePointer<CChar>?
        guard let options = PQconninfoParse(connectionString, &errorMessage) else {
            let detail = errorMessage.map { PostgresConnection.trimmed($0) } ?? "out of memory"
            PQfreemem(errorMessage)
            throw PostgresError(.invalidConnectionString, "invalid database URL: \(redactor.redact(detail))")
        }
        let values = Self.values(of: options)
        PQconninfoFree(options)
        if let problem = Self.misreadPassword(connectionString, values) {
            throw PostgresError(.invalidConnectionString, "invalid database URL '\(redactor.redact(connectionString))': \(problem)")
        }
        // Option values are checked when a connection starts; start one and drop it at once.
        let probe = withCStrings(["dbname"]) { keywords in
            withCStrings([connectionString]) { values in PQconnectStartParams(keywords, values, 1) }
        }
        defer { PQfinish(probe) }
        if let probe, PQstatus(probe) == CONNECTION_BAD {
            let detail = PostgresConnection.trimmed(PQerrorMessage(probe))
            if detail.hasPrefix("invalid") || detail.contains("is not supported") {
                throw PostgresError(.invalidConnectionString, "invalid database URL: \(redactor.redact(detail))")
            }
        }
    }

    /// The password in `connectionString` as libpq reads it, if it has one, so callers can keep it
    /// out of output.
    static func password(in connectionString: String) -> String? {
        guard let options = PQconninfoParse(connectionString, nil) else { return nil }
        defer { PQconninfoFree(options) }
        return values(of: options)["password"]
    }

    /// The options libpq parsed that have a value, by keyword.
    private static func values(of options: UnsafeMutablePointer<PQconninfoOption>) -> [String: String] {
        var values: [String: String] = [:]
        var option = options
        while let keyword = option.pointee.keyword {
            if let value = option.pointee.val { values[String(cString: keyword)] = String(cString: value) }
            option += 1
        }
        return values
    }

    /// Why libpq would read part of a URL's user name or password as its host or port: an
    /// unencoded `@` or `/` in the password (`postgresql://u:a@b@db/app` makes the host
    /// `b@db`, and libpq would repeat it in every connection error). Such a URL is refused before
    /// any connection is tried; nil for a URL libpq reads as it was meant.
    private static func misreadPassword(_ connectionString: String, _ values: [String: String]) -> String? {
        let lowered = connectionString.lowercased()
        guard lowered.hasPrefix("postgresql://") || lowered.hasPrefix("postgres://"), connectionString.contains("@") else { return nil }
        // A user name may hold an encoded @ (Azure's user%40server); a host or port never does.
        let hostsHoldAt = ["host", "hostaddr", "port"].contains { values[$0]?.contains("@") == true }
        let portIsNumber = (values["port"] ?? "").split(separator: ",", omittingEmptySubsequences: false)
            .allSatisfy { $0.isEmpty || $0.allSatisfy(\.isASCII) && $0.allSatisfy(\.isNumber) }
        guard hostsHoldAt || !portIsNumber else { return nil }
        return "libpq would read part of the user name or password as the host or port; "
            + "percent-encode '@', '/', '?', '#' and '%' in them (%40, %2F, %3F, %23, %25)"
    }

}

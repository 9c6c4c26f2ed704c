// Score churn customers inside a Java application with the model exported as Java source.
//
//   javac -d build BUNDLE/Churn.java ScoreChurn.java
//   java -cp build ScoreChurn < customers.tsv           # a header line, then one customer a line
//   java -cp build ScoreChurn tenure_months=3 plan=basic ...
//
// Churn.java comes from `modelport export churn --format bundle` and needs nothing but the
// JDK. Churn.score takes a Map<String, Object> keyed by input name: numbers may come as
// Number or as text, a missing value is null. It returns the probability of each class.
import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.util.HashMap;
import java.util.Map;
import java.util.StringJoiner;

public final class ScoreChurn {
    private ScoreChurn() {}

    public static void main(String[] args) throws IOException {
        if (args.length > 0) {
            Map<String, Object> customer = new HashMap<>();
            for (String arg : args) {
                int eq = arg.indexOf('=');
                if (eq < 0) {
                    System.err.println("expected name=value, got " + arg);
                    System.exit(2);
                }
                String value = arg.substring(eq + 1);
                customer.put(arg.substring(0, eq), value.isEmpty() ? null : value);
            }
            double[] proba = Churn.score(customer);
            System.out.printf("churn probability %.3f%n", proba[proba.length - 1]);
            return;
        }
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        String header = in.readLine();
        if (header == null) {
            return;
        }
        String[] names = header.split("\t", -1);
        StringBuilder out = new StringBuilder();
        for (String line = in.readLine(); line != null; line = in.readLine()) {
            if (line.isEmpty()) {
                continue;
            }
            String[] fields = line.split("\t", -1);
            Map<String, Object> customer = new HashMap<>();
            for (int i = 0; i < names.length; i++) {
                String value = i < fields.length ? fields[i] : "";
                customer.put(names[i], value.isEmpty() ? null : value);
            }
            StringJoiner row = new StringJoiner("\t");
            for (double p : Churn.score(customer)) {
                row.add(Double.toString(p));  // enough digits to read back the same double
            }
            out.append(row).append('\n');
        }
        System.out.print(out);
    }
}

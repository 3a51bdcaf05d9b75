// Where Apache Kafka's Java client puts a keyed record: the default partitioner's
// Utils.toPositive(Utils.murmur2(keyBytes)) % numPartitions (BuiltInPartitioner.partitionForKey).
// Usage: java -cp kafka-clients.jar:. JavaPartition PARTITIONS KEY... -> "KEY<TAB>murmur2<TAB>partition" lines.
import java.nio.charset.StandardCharsets;
import org.apache.kafka.clients.producer.internals.BuiltInPartitioner;
import org.apache.kafka.common.utils.Utils;

public class JavaPartition {
    public static void main(String[] args) {
        int partitions = Integer.parseInt(args[0]);
        for (int i = 1; i < args.length; i++) {
            byte[] key = args[i].getBytes(StandardCharsets.UTF_8);
            System.out.println(args[i] + "\t" + Utils.murmur2(key) + "\t"
                + BuiltInPartitioner.partitionForKey(key, partitions));
        }
    }
}

package dev.lightning.attention.engine.reference;

/** The one error measure of the project: how far a result is from a reference. */
public final class Accuracy {
    private Accuracy() {
    }

    /**
     * ||a - ref|| / ||ref|| over all elements (Frobenius), in float64. Infinite when the lengths
     * differ, or when the reference is zero and the result is not; 0 when both are zero.
     */
    public static double relativeError(float[] a, float[] ref) {
        if (a.length != ref.length) {
            return Double.POSITIVE_INFINITY;
        }
        double num = 0;
        double den = 0;
        for (int i = 0; i < a.length; i++) {
            double d = (double) a[i] - ref[i];
            num += d * d;
            den += (double) ref[i] * ref[i];
        }
        return den == 0 ? (num == 0 ? 0 : Double.POSITIVE_INFINITY) : Math.sqrt(num / den);
    }
}

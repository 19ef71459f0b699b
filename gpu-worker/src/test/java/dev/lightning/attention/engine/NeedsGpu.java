package dev.lightning.attention.engine;

import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.extension.ConditionEvaluationResult;
import org.junit.jupiter.api.extension.ExecutionCondition;
import org.junit.jupiter.api.extension.ExtendWith;
import org.junit.jupiter.api.extension.ExtensionContext;

import java.lang.annotation.ElementType;
import java.lang.annotation.Retention;
import java.lang.annotation.RetentionPolicy;
import java.lang.annotation.Target;

/**
 * A test class or case that needs a usable GPU: tagged "gpu" (so {@code bin/gpu-check}, which runs
 * the tag, runs it) and skipped where {@link Backends#gpuUnavailableReason} gives a reason, with that
 * reason printed ("... SKIPPED: no usable GPU: ...") and in the report. On a class, its
 * {@code @BeforeAll} methods run only where it is not skipped, so they can open the device directly.
 * The tag and the skip in one place: a GPU test that skipped itself but lacked the tag ran on no
 * machine (GpuTagTest).
 */
@Target({ElementType.TYPE, ElementType.METHOD})
@Retention(RetentionPolicy.RUNTIME)
@Tag("gpu")
@ExtendWith(NeedsGpu.Condition.class)
public @interface NeedsGpu {
    /** Enabled where a GPU is usable; else disabled with the reason, printed once per class or case. */
    final class Condition implements ExecutionCondition {
        @Override
        public ConditionEvaluationResult evaluateExecutionCondition(ExtensionContext context) {
            boolean annotated = context.getElement().map(e -> e.isAnnotationPresent(NeedsGpu.class)).orElse(false);
            if (!annotated) { // a case of an annotated class: the class's evaluation decided
                return ConditionEvaluationResult.enabled("not marked @NeedsGpu itself");
            }
            String reason = Backends.gpuUnavailableReason();
            if (reason == null) {
                return ConditionEvaluationResult.enabled("a GPU is usable");
            }
            String who = context.getTestMethod().map(m -> m.getDeclaringClass().getSimpleName() + "." + m.getName())
                    .orElseGet(() -> context.getRequiredTestClass().getSimpleName());
            System.out.println(who + " SKIPPED: no usable GPU: " + reason);
            return ConditionEvaluationResult.disabled("no usable GPU: " + reason);
        }
    }
}

//! A week's self-check as a book page: the quiz parsed by the runner's own parser
//! ([`crate::quiz::parse_quiz`]), each question with its options, and its key and reason folded
//! away in a `<details>` block, so a reader answers before looking; a box names the command that
//! asks the questions one at a time and records the score.

use crate::quiz::Quiz;

/// The markdown of `week`'s quiz page.
pub(crate) fn quiz_page(week: &str, quiz: &Quiz) -> String {
    let mut out = format!(
        "# {}\n\n<div class=\"xtask-lesson\">\n<p class=\"xtask-facts\">{} questions, each with \
         its key and why. Answer each before you open its key, or take the quiz in the terminal, \
         one question at a time, with the score recorded:</p>\n<pre class=\"xtask-commands\">\
         <code>cargo xtask quiz {week}</code></pre>\n</div>\n",
        quiz.title,
        quiz.questions.len()
    );
    for question in &quiz.questions {
        out.push_str(&format!(
            "\n## {}. {}\n\n",
            question.number,
            question.prompt.replace('\n', " ")
        ));
        for (letter, text) in &question.options {
            out.push_str(&format!("- {letter}) {text}\n"));
        }
        if !question.options.is_empty() {
            out.push('\n');
        }
        out.push_str(&format!(
            "<details class=\"xtask-key\"><summary>The key</summary>\n\n**{}** — {}\n\n</details>\n",
            question.key_text(),
            question.why
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quiz::parse_quiz;

    #[test]
    fn each_key_is_folded_under_its_question() {
        let quiz = parse_quiz(
            "# Sample\n\n## 1. Which one?\n\n- a) this\n- b) that\n\nAnswer: b\nWhy: because.\n\n\
             ## 2. Name it.\n\nAnswer: EAGAIN\nWhy: drained.\n",
        )
        .unwrap();
        let page = quiz_page("w99", &quiz);
        assert!(page.starts_with("# Sample\n"), "{page}");
        assert!(page.contains("<code>cargo xtask quiz w99</code>"), "{page}");
        assert!(
            page.contains(
                "## 1. Which one?\n\n- a) this\n- b) that\n\n<details class=\"xtask-key\">\
                 <summary>The key</summary>\n\n**b) that** — because.\n\n</details>\n"
            ),
            "{page}"
        );
        assert!(page.contains("**EAGAIN** — drained."), "{page}");
    }
}

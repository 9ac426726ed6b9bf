// The login page's "Sign in with ..." link: the "Remember me" box beside it (shown only with
// scripts on) adds remember=1 to the link, as the password form's box does for its login.
(function () {
  "use strict";
  var field = document.getElementById("oidc-remember-field");
  var box = document.getElementById("oidc-remember");
  var link = document.getElementById("oidc-login");
  if (!field || !box || !link) {
    return;
  }
  field.hidden = false;
  box.addEventListener("change", function () {
    var url = new URL(link.href);
    if (box.checked) {
      url.searchParams.set("remember", "1");
    } else {
      url.searchParams.delete("remember");
    }
    link.href = url.toString();
  });
})();

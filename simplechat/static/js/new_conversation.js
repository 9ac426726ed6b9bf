/* New conversation: Select2 with AJAX user search; the title shows for groups. */
(function () {
  "use strict";
  var $select = $("#participants");
  if (!$select.length) { return; }
  $select.select2({
    theme: "bootstrap-5",
    width: "100%",
    placeholder: "Name, username or e-mail",
    minimumInputLength: 1,
    language: { search: function () { return "Search people"; } },
    ajax: {
      url: $select.data("search-url"),
      dataType: "json",
      delay: 200,
      data: function (params) { return { q: params.term || "" }; },
      processResults: function (data) { return { results: data.results || [] }; }
    }
  });
  // Select2's own controls take their name from our label; its inline search box is a textarea,
  // where role="searchbox" is not allowed (a textarea is a textbox already).
  var $box = $select.next(".select2");
  $box.find(".select2-selection").attr("aria-labelledby", "participants-label");
  $box.find("textarea.select2-search__field").removeAttr("role")
    .attr("aria-describedby", "participants-help");
  function toggleTitle() {
    var count = ($select.val() || []).length;
    $("#title-group").toggleClass("d-none", count < 2);
  }
  $select.on("change", toggleTitle);
  toggleTitle();
})();
